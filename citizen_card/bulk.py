"""Hot-path SQL: statements sent together, without the ORM, in the session's transaction.

A gate tap touches about ten rows; through the ORM that is ten units of work and ten round
trips (docs/performance.md). Here a hot path writes its statements as plain SQL with named
binds and runs a list of them with :func:`run`:

* on PostgreSQL they go through the session's psycopg connection as one pipeline (sent at
  once, one wait for all the answers), lists of rows as multi-row statements or ``COPY``;
  consecutive writes go as one statement (data-modifying CTEs) and consecutive plain reads
  as another (columns as typed arrays), because each statement costs about as much to send
  as to run; a row-locking read stays on its own, so the reads after it are current;
* elsewhere (SQLite) each runs through SQLAlchemy, which applies the declared bind types.

Writes of one run must therefore not touch the same rows (in one statement each sees the
table as it was before it); foreign keys between them are checked at the statement's end.

Statements are portable SQL: ``IN :name`` takes a list (``= ANY(...)`` on PostgreSQL),
``RETURNING`` and ``ON CONFLICT`` work on both, and a trailing ``FOR UPDATE`` is dropped on
SQLite (one writer at a time there). Statements in one run must not depend on each other's
results in Python: read the results after :func:`run` returns, then build the next run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from functools import cache
from functools import cached_property
from functools import lru_cache
from typing import Any

from sqlalchemy import TextClause
from sqlalchemy import bindparam
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.types import TypeEngine

from citizen_card.extensions import db

_BIND = re.compile(r"(?<![:\w]):(\w+)")
_FOR_UPDATE = re.compile(r"\s+FOR UPDATE(\s+OF\s+\w+)?\s*$", re.IGNORECASE)


class BulkError(Exception):
    """A statement of a run failed; the transaction must be rolled back."""


@dataclass(frozen=True, eq=False)
class Sql:
    """One statement, written once, rendered for each database on first use."""

    source: str
    types: Mapping[str, TypeEngine[Any]] = field(default_factory=dict)
    lists: frozenset[str] = frozenset()
    columns: Mapping[str, TypeEngine[Any]] = field(default_factory=dict)
    postgresql: str | None = None  # the same statement in PostgreSQL's own words
    # The PostgreSQL form takes each bind as an array of all rows' values (unnest): many
    # rows go as one statement with one parameter per column.
    arrays: bool = False

    @cached_property
    def returns_rows(self) -> bool:
        """True for a query or a statement with RETURNING."""
        head = self.source.lstrip().split(None, 1)[0].upper()
        return head in ("SELECT", "WITH") or " RETURNING " in f" {self.source.upper()} "

    @cached_property
    def locks(self) -> bool:
        """True for a query taking row locks (FOR UPDATE)."""
        return _FOR_UPDATE.search(self.postgresql or self.source) is not None

    @cached_property
    def returning_one(self) -> re.Pattern[str] | None:
        """For a write returning one column: a pattern matching its RETURNING clause."""
        match = re.search(r"\sRETURNING\s+([\w.]+)\s*$", self.postgresql or self.source, re.I)
        return re.compile(r"RETURNING\s+([\w.]+)\s*$", re.I) if match else None

    @cached_property
    def pg(self) -> str:
        """The psycopg form: %(name)s binds, lists as = ANY(one array literal)."""
        source = (self.postgresql or self.source).replace("%", "%%")
        for name, kind in self.list_types.items():
            array = f"ANY(CAST(:{name} AS {kind}[]))"
            source = re.sub(rf"\bIN\s+:{name}\b", f"= {array}", source)
            source = re.sub(rf"\bANY\(:{name}\)", array, source)
        return _BIND.sub(r"%(\1)s", source)

    @cached_property
    def list_types(self) -> dict[str, str]:
        """List binds and their PostgreSQL element types ("atcs:bigint"; text by default)."""
        return dict((entry.split(":") + ["text"])[:2] for entry in sorted(self.lists))

    def pg_params(self, params: Mapping[str, Any]) -> Mapping[str, Any]:
        """Lists sent as one array literal: psycopg adapting a list costs more than the query."""
        if not self.lists:
            return params
        out = dict(params)
        for name in self.list_types:
            out[name] = "{" + ",".join(_array_item(v) for v in params[name]) + "}"
        return out

    @cached_property
    def pg_values(self) -> tuple[str, str, list[str]] | None:
        """(head, tail, names) of a plain INSERT … VALUES (…) without RETURNING, so that many
        rows go as one multi-row statement; None for any other statement."""
        source = self.postgresql or self.source
        match = re.fullmatch(r"(INSERT INTO .+? VALUES\s*)\(([^()]*)\)(.*)", source, re.S)
        if match is None or self.returns_rows:
            return None
        names = [_BIND.fullmatch(v.strip()) for v in match.group(2).split(",")]
        if not all(names):
            return None
        head = match.group(1).replace("%", "%%")
        return head, match.group(3).replace("%", "%%"), [n.group(1) for n in names if n]

    @cached_property
    def pg_copy(self) -> str | None:
        """``COPY table (columns) FROM STDIN`` for a plain INSERT with nothing after VALUES."""
        values = self.pg_values
        if values is None or values[1].strip():
            return None
        match = re.match(r"INSERT INTO (\w+) (\([^()]*\))", values[0])
        return f"COPY {match.group(1)} {match.group(2)} FROM STDIN" if match else None

    @cached_property
    def clause(self) -> TextClause:
        """The SQLAlchemy form (typed binds, expanding lists, no row locks)."""
        clause = text(_FOR_UPDATE.sub("", self.source))
        binds = [bindparam(name, type_=kind) for name, kind in self.types.items()]
        binds += [bindparam(name, expanding=True) for name in self.list_types]
        if binds:
            clause = clause.bindparams(*binds)
        if self.columns:
            return clause.columns(**self.columns)  # type: ignore[return-value]
        return clause


def _array_item(value: Any) -> str:
    if isinstance(value, int):
        return str(value)
    text_ = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text_}"'


def sql(
    source: str,
    *,
    types: Mapping[str, TypeEngine[Any]] | None = None,
    lists: Sequence[str] = (),
    columns: Mapping[str, TypeEngine[Any]] | None = None,
    postgresql: str | None = None,
    arrays: bool = False,
) -> Sql:
    """Declare a statement: ``types`` of binds, ``lists`` (``IN :name``; "name:bigint" for
    a PostgreSQL element type other than text) and ``columns`` of results that need one
    (datetimes, booleans: SQLite stores them as text and integers); ``postgresql`` replaces
    the source there when its planner needs other words for the same query, and with
    ``arrays`` it takes every bind as an array of all the rows' values."""
    return Sql(source, dict(types or {}), frozenset(lists), dict(columns or {}), postgresql, arrays)


@cache
def _ids(table: str) -> Sql:
    return sql(
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < :count)"
        f" SELECT (SELECT COALESCE(MAX(id), 0) FROM {table}) + x FROM n",
        postgresql=f"SELECT nextval(pg_get_serial_sequence('{table}', 'id'))"
        " FROM generate_series(1, :count)",
    )


def new_ids_step(table: str, count: int) -> Step:
    """A step reserving ``count`` ids of ``table`` (read them with :func:`new_ids`).

    With the ids known before anything is inserted, rows that refer to each other go out in
    one run. PostgreSQL takes them from the table's sequence (unused ones leave a gap, as a
    rolled-back insert does); SQLite counts on from the highest id, which is safe because its
    writers hold the database lock from BEGIN (docs/architecture.md). Insert them in the same
    transaction.
    """
    return Step(_ids(table), {"count": max(count, 1)})


def new_ids(step: Step) -> list[int]:
    """The ids a :func:`new_ids_step` reserved."""
    return [int(row[0]) for row in step.rows]


@dataclass
class Step:
    """One statement of a run, with one set of parameters or a list (one row each)."""

    query: Sql
    params: Mapping[str, Any] | Sequence[Mapping[str, Any]]
    rows: list[tuple[Any, ...]] = field(default_factory=list)

    @property
    def many(self) -> bool:
        """True when params is a list of rows."""
        return not isinstance(self.params, Mapping)


def run(*steps: Step) -> None:
    """Run the steps in order in the session's transaction; fill each step's ``rows``.

    Raises BulkError if any statement fails (the transaction is then unusable until rolled
    back). Steps with an empty list of rows are skipped.
    """
    live = [s for s in steps if not (s.many and not s.params)]
    if not live:
        return
    conn = db.session.connection()
    if conn.dialect.name == "postgresql":
        _run_psycopg(conn, live)
    else:
        _run_sqlalchemy(conn, live)


def _run_psycopg(conn: Connection, steps: list[Step]) -> None:
    import psycopg

    raw = conn.connection.driver_connection
    try:
        segment: list[Step] = []
        for step in steps:
            copy = step.query.pg_copy
            if copy is None or isinstance(step.params, Mapping) or len(step.params) < _COPY_ROWS:
                segment.append(step)
                continue
            _pipeline(raw, segment)
            segment = []
            # Many plain rows: COPY is PostgreSQL's fastest way in (no statement to parse).
            with raw.cursor() as cur, cur.copy(copy) as stream:  # type: ignore[union-attr]
                names = step.query.pg_values[2]  # type: ignore[index]
                for row in step.params:
                    stream.write_row([row[n] for n in names])
        _pipeline(raw, segment)
    except psycopg.Error as exc:
        raise BulkError(str(exc)) from exc


def _pipeline(raw: Any, steps: list[Step]) -> None:
    import psycopg
    from psycopg.pq import TransactionStatus

    if not steps:
        return
    cursors: list[tuple[list[Step], Any]] = []
    first = raw.pgconn.transaction_status == TransactionStatus.IDLE
    try:
        with raw.pipeline():
            if first:  # the run that begins the transaction; the setting lasts until its end
                cur = raw.cursor()
                cur.execute(_GENERIC_PLANS)
                cur.close()
            for group in _groups(steps):
                if len(group) > 1:
                    cur = psycopg.RawCursor(raw)
                    statement, binds = _together(group)
                    cur.execute(statement, binds)
                    cursors.append((group, cur))
                    continue
                step = group[0]
                values = step.query.pg_values
                if values is not None and not isinstance(step.params, Mapping):
                    # One statement of many rows: PostgreSQL plans and executes it once.
                    head, tail, names = values
                    row = "(" + ", ".join(["%s"] * len(names)) + ")"
                    for chunk in _chunks(step.params, _MAX_PARAMS // len(names)):
                        cur = raw.cursor()
                        cur.execute(
                            head + ", ".join([row] * len(chunk)) + tail,
                            [r[n] for r in chunk for n in names],
                        )
                        cursors.append((group, cur))
                    continue
                cur = raw.cursor()
                if step.query.arrays and not isinstance(step.params, Mapping):
                    keys = list(step.params[0])
                    cur.execute(step.query.pg, {k: [r[k] for r in step.params] for k in keys})
                elif isinstance(step.params, Mapping):
                    cur.execute(step.query.pg, step.query.pg_params(step.params))
                else:
                    cur.executemany(step.query.pg, step.params, returning=step.query.returns_rows)
                cursors.append((group, cur))
        for group, cur in cursors:
            if len(group) > 1:
                _spread(group, cur)
                continue
            step = group[0]
            if not step.query.returns_rows:
                continue
            rows: list[tuple[Any, ...]] = []
            while True:
                rows.extend(cur.fetchall())
                if cur.description is not None:
                    _COLUMNS.setdefault(step.query, len(cur.description))
                if not cur.nextset():
                    break
            step.rows = rows
    finally:
        for _group, cur in cursors:
            cur.close()


def _spread(group: list[Step], cur: Any) -> None:
    """Each step's rows from a statement of several (one array per column or statement)."""
    if all(_reads(s.query) for s in group):
        arrays = list(cur.fetchone())
        for step in group:
            columns = [arrays.pop(0) for _ in range(_COLUMNS[step.query])]
            step.rows = list(zip(*columns, strict=True)) if columns[0] is not None else []
        return
    returning = [s for s in group if s.query.returns_rows]
    found = cur.fetchone() if returning else ()
    for step, values in zip(returning, found or (), strict=True):
        step.rows = [(value,) for value in values or ()]


def _groups(steps: list[Step]) -> list[list[Step]]:
    """Consecutive writes, or consecutive plain reads, that can go as one statement; every
    other step on its own."""
    groups: list[list[Step]] = []
    current: list[Step] = []
    kind: str | None = None
    params = 0
    for step in steps:
        size, this = _together_size(step)
        if size is not None and current and this == kind and params + size <= _TOGETHER:
            current.append(step)
            params += size
            continue
        if current:
            groups.append(current)
        current, kind, params = ([step], this, size) if size is not None else ([], None, 0)
        if size is None:
            groups.append([step])
    if current:
        groups.append(current)
    return groups


def _reads(query: Sql) -> bool:
    head = (query.postgresql or query.source).lstrip().split(None, 1)[0].upper()
    return head == "SELECT" and not query.locks and query in _COLUMNS


def _together_size(step: Step) -> tuple[int | None, str | None]:
    """(parameters it takes inside a WITH statement, "read" or "write"); (None, None) if it
    cannot go there."""
    query = step.query
    head = (query.postgresql or query.source).lstrip().split(None, 1)[0].upper()
    if head == "SELECT":
        # A plain read whose columns are known (from its first run on its own); a row lock
        # stays a statement of its own, so that the reads after it are current.
        if not isinstance(step.params, Mapping) or not _reads(query):
            return None, None
        return len(step.params), "read"
    if head not in ("INSERT", "UPDATE", "DELETE"):
        return None, None
    if query.returns_rows and not query.returning_one:
        return None, None
    if isinstance(step.params, Mapping):
        return len(step.params), "write"
    if query.arrays:
        return len(step.params[0]), "write"
    if query.pg_values is not None:
        return len(step.params) * len(query.pg_values[2]), "write"
    return None, None


def _together(group: list[Step]) -> tuple[str, list[Any]]:
    """Several statements as one: one parse, bind and execute, one snapshot.

    Writes become data-modifying CTEs; they must not touch the same rows (each sees the
    table as it was before the statement), foreign keys between them are checked at its
    end, and each one's returned rows come back as an array. Reads become CTEs whose
    columns come back as typed arrays. ($n placeholders: psycopg would parse a statement
    this long for its own placeholders on every run, as it caches only short ones.)"""
    shape = tuple(
        (step.query, "one" if isinstance(step.params, Mapping) else len(step.params))
        for step in group
    )
    statement, slots = _together_template(shape)
    given = {
        n: step.query.pg_params(step.params)
        for n, step in enumerate(group)
        if isinstance(step.params, Mapping)
    }
    values: list[Any] = []
    for n, row, name in slots:
        if n in given:
            values.append(given[n][name])
            continue
        rows = group[n].params
        assert not isinstance(rows, Mapping)
        # arrays (row None): every row's value of this column; else one row's value
        values.append([r[name] for r in rows] if row is None else rows[row][name])
    return statement, values


@lru_cache(maxsize=256)
def _together_template(
    shape: tuple[tuple[Sql, str | int], ...],
) -> tuple[str, list[tuple[int, int | None, str]]]:
    slots: dict[tuple[int, int | None, str], int] = {}
    ctes: list[str] = []
    results: list[str] = []

    def slot(n: int, row: int | None, name: str) -> str:
        return f"${slots.setdefault((n, row, name), len(slots) + 1)}"

    if all(rows == "one" and _reads(query) for query, rows in shape):
        # Reads: each one's columns come back as typed arrays, aggregated in one pass.
        for n, (query, _rows) in enumerate(shape):
            text_ = _NAMED.sub(lambda m, n=n: slot(n, None, m.group(1)), query.pg)  # type: ignore[misc]
            names = [f"c{i}" for i in range(_COLUMNS[query])]
            ctes.append(f"r{n}({', '.join(names)}) AS ({text_.replace('%%', '%')})")
            aggregates = ", ".join(f"array_agg({c})" for c in names)
            results.append(f"(SELECT {aggregates} FROM r{n}) AS a{n}")
        return f"WITH {', '.join(ctes)} SELECT * FROM {', '.join(results)}", list(slots)
    for n, (query, rows) in enumerate(shape):
        if rows == "one" or query.arrays:
            text_ = _NAMED.sub(lambda m, n=n: slot(n, None, m.group(1)), query.pg)  # type: ignore[misc]
        else:
            head, tail, names = query.pg_values  # type: ignore[misc]
            rows_sql = [
                "(" + ", ".join(slot(n, i, c) for c in names) + ")" for i in range(int(rows))
            ]
            text_ = head + ", ".join(rows_sql) + tail
        if query.returns_rows:
            text_ = query.returning_one.sub(r"RETURNING \1 AS _r", text_)  # type: ignore[union-attr]
            results.append(f"ARRAY(SELECT _r FROM w{n})")
        ctes.append(f"w{n} AS ({text_.replace('%%', '%')})")
    return f"WITH {', '.join(ctes)} SELECT {', '.join(results) or 'NULL'}", list(slots)


_NAMED = re.compile(r"%\((\w+)\)s")
# How many columns each read returns, learnt from its first run on its own.
_COLUMNS: dict[Sql, int] = {}


# Hot-path statements are prepared (psycopg does so from their fifth run) and, with lists
# bound as arrays, PostgreSQL would plan each run again: planning cost more than running.
# Their generic plans are index lookups. Asked for by the run that begins a transaction (a
# transaction begun by the ORM keeps custom plans: slower, never wrong).
_GENERIC_PLANS = "SELECT set_config('plan_cache_mode', 'force_generic_plan', true)"
# From this many rows a plain INSERT goes as COPY.
_COPY_ROWS = 32
# PostgreSQL's limit on one statement's parameters.
_MAX_PARAMS = 65535
# Statements go together up to this many parameters: what a few taps write, not an upload's
# thousands of rows (those are few statements anyway), so each cached shape stays small.
_TOGETHER = 2000


def _chunks(rows: Sequence[Mapping[str, Any]], size: int) -> list[Sequence[Mapping[str, Any]]]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def _run_sqlalchemy(conn: Connection, steps: list[Step]) -> None:
    try:
        for step in steps:
            clause = step.query.clause
            if not step.many:
                result = conn.execute(clause, step.params)
                step.rows = [tuple(r) for r in result] if step.query.returns_rows else []
            elif step.query.returns_rows:
                step.rows = [
                    tuple(r)
                    for params in step.params
                    for r in conn.execute(clause, params)  # type: ignore[arg-type]
                ]
            else:
                conn.execute(clause, list(step.params))  # type: ignore[arg-type]
    except DBAPIError as exc:
        raise BulkError(str(exc.orig)) from exc
