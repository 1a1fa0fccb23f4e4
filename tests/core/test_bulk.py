"""citizen_card.bulk: hot-path statements in the session's transaction, on both databases."""

from __future__ import annotations

import pytest
from sqlalchemy import func
from sqlalchemy import select

from citizen_card.audit.actions import Actor
from citizen_card.audit.actions import audit_row
from citizen_card.audit.actions import audit_step
from citizen_card.audit.models import AuditEvent
from citizen_card.bulk import BulkError
from citizen_card.bulk import Step
from citizen_card.bulk import run
from citizen_card.bulk import sql
from citizen_card.extensions import db
from citizen_card.ledger.models import Posting


def _count(action: str) -> int:
    return int(db.session.scalar(select(func.count()).where(AuditEvent.action == action)) or 0)


def test_many_rows_are_written_in_the_callers_transaction(app_ctx):
    # 7,000 rows of 10 values: more than PostgreSQL's 65,535 parameters for one statement.
    rows = [audit_row("test.bulk", actor=Actor.system("t"), details={"n": i}) for i in range(7000)]
    run(audit_step(rows))
    assert _count("test.bulk") == 7000
    distinct = select(func.count(func.distinct(AuditEvent.details))).where(
        AuditEvent.action == "test.bulk"
    )
    assert db.session.scalar(distinct) == 7000  # every row with its own values
    db.session.rollback()
    assert _count("test.bulk") == 0


def test_lists_and_returning_rows(app_ctx):
    names = ["test.bulk.0", "test.bulk.1", "test.bulk.2", 'test.bulk "3", \\ {x}']
    run(audit_step([audit_row(name, actor=Actor.system("t")) for name in names]))
    query = sql(
        "SELECT action FROM audit_event WHERE action IN :actions ORDER BY action",
        lists=["actions"],
    )
    # Quotes, commas, backslashes and braces survive the array literal PostgreSQL is sent.
    found = Step(query, {"actions": ["test.bulk.0", "test.bulk.2", names[3], "nothing"]})
    run(found, Step(query, []))  # an empty list of rows is skipped
    assert sorted(found.rows) == sorted([("test.bulk.0",), ("test.bulk.2",), (names[3],)])


def test_a_failing_statement_raises_bulk_error(app_ctx):
    broken = sql("INSERT INTO audit_event (id, action) VALUES (:id, :action)")
    with pytest.raises(BulkError):
        run(Step(broken, [{"id": 1, "action": None}, {"id": 1, "action": None}]))
    db.session.rollback()


def test_postgresql_form_of_a_statement():
    insert = sql("INSERT INTO t (a, b) VALUES (:a, :b) ON CONFLICT (a) DO NOTHING")
    assert insert.pg == "INSERT INTO t (a, b) VALUES (%(a)s, %(b)s) ON CONFLICT (a) DO NOTHING"
    assert insert.pg_values == (
        "INSERT INTO t (a, b) VALUES ",
        " ON CONFLICT (a) DO NOTHING",
        ["a", "b"],
    )
    returning = sql("INSERT INTO t (a) VALUES (:a) RETURNING id")
    assert returning.returns_rows and returning.pg_values is None
    listed = sql("SELECT a FROM t WHERE a IN :xs AND b LIKE '5%' FOR UPDATE", lists=["xs"])
    assert listed.pg == (
        "SELECT a FROM t WHERE a = ANY(CAST(%(xs)s AS text[])) AND b LIKE '5%%' FOR UPDATE"
    )
    assert listed.pg_params({"xs": ['a"b', "c\\d", "e,f"]}) == {"xs": '{"a\\"b","c\\\\d","e,f"}'}
    assert "FOR UPDATE" not in str(listed.clause)


def test_reserved_ids_are_new_and_distinct(app_ctx):
    from citizen_card.bulk import new_ids
    from citizen_card.bulk import new_ids_step

    run(audit_step([audit_row("test.bulk.ids", actor=Actor.system("t"))]))
    highest = db.session.scalar(select(func.max(AuditEvent.id)))
    step = new_ids_step("audit_event", 5)
    run(step)
    ids = new_ids(step)
    assert len(set(ids)) == 5 and min(ids) > highest
    rows = [{**audit_row("test.bulk.ids", actor=Actor.system("t")), "id": i} for i in ids]
    explicit = sql(
        "INSERT INTO audit_event (id, occurred_at, actor_type, actor_id, action, outcome,"
        " details) VALUES (:id, :occurred_at, :actor_type, :actor_id, :action, :outcome,"
        " :details)",
        types={"occurred_at": AuditEvent.__table__.c.occurred_at.type},
    )
    run(Step(explicit, rows))
    assert _count("test.bulk.ids") == 6


def test_consecutive_writes_go_together_with_their_returned_rows(app_ctx):
    """On PostgreSQL a run's writes become one statement (data-modifying CTEs): each step
    still gets its own rows back, a child row may refer to a parent written beside it, and
    a failing write fails them all. SQLite runs them one by one, with the same results."""
    from citizen_card.bulk import _groups
    from citizen_card.bulk import _together
    from citizen_card.bulk import new_ids
    from citizen_card.bulk import new_ids_step
    from citizen_card.ledger.actions import NewEntry
    from citizen_card.ledger.actions import entry_ids_step
    from citizen_card.ledger.actions import entry_steps
    from citizen_card.ledger.actions import get_account

    debit = get_account("topup_clearing", "bulk-test", allow_negative=True)
    credit = get_account("revenue", "bulk-test", allow_negative=True)
    ids = entry_ids_step(2)
    run(ids)
    entries = [
        NewEntry("test", ((debit.id, -100 * n, False), (credit.id, 100 * n, False))) for n in (1, 2)
    ]
    heads, postings, moves = entry_steps(entries, new_ids(ids), actor=Actor.system("t"))
    marked = sql(
        "UPDATE ledger_account SET kind = kind WHERE id IN :ids RETURNING id", lists=["ids:bigint"]
    )
    touched = Step(marked, {"ids": [debit.id, credit.id]})
    events = audit_step([audit_row("test.together", actor=Actor.system("t"))])
    steps = [heads, postings, touched, events, moves]
    groups = _groups([s for s in steps if not (s.many and not s.params)])
    assert [len(g) for g in groups] == [4]  # moves has no rows to write: skipped
    statement, params = _together(groups[0])
    assert statement.startswith("WITH w0 AS (INSERT INTO ledger_entry")
    assert len(params) == 2 * 6 + 4 * 3 + 1 + 10
    run(*steps)  # postings refer to entries written in the same statement
    assert sorted(touched.rows) == sorted([(debit.id,), (credit.id,)])
    assert _count("test.together") == 1
    total = db.session.scalar(
        select(func.sum(func.abs(Posting.amount_fen))).where(Posting.entry_id.in_(new_ids(ids)))
    )
    assert total == 600
    db.session.rollback()
    # A write that fails takes the others with it.
    again = new_ids_step("ledger_entry", 1)
    run(again)
    orphan = {"entry_id": new_ids(again)[0], "account_id": debit.id, "amount_fen": 1}
    bad = Step(
        sql(
            "INSERT INTO ledger_posting (entry_id, account_id, amount_fen)"
            " VALUES (:entry_id, :account_id, :amount_fen)"
        ),
        [orphan],  # its entry was never written
    )
    with pytest.raises(BulkError):
        run(audit_step([audit_row("test.together.2", actor=Actor.system("t"))]), bad)
    db.session.rollback()
    assert _count("test.together.2") == 0


def test_consecutive_reads_go_together_with_their_types(app_ctx):
    """On PostgreSQL plain reads after their first run go as one statement; rows, types
    and empty results come back as each would alone."""
    from datetime import datetime

    from sqlalchemy import DateTime

    from citizen_card.bulk import _groups

    rows = [audit_row("test.reads", actor=Actor.system("t"), details={"n": i}) for i in range(3)]
    run(audit_step(rows))
    listed = sql(
        "SELECT id, occurred_at, details FROM audit_event WHERE action = :a ORDER BY id",
        columns={"occurred_at": DateTime(timezone=True)},
    )
    counted = sql("SELECT count(*) FROM audit_event WHERE action = :a")
    alone = Step(listed, {"a": "test.reads"})
    run(alone)  # a read's first run is on its own: it tells how many columns it has
    run(Step(counted, {"a": "test.reads"}))
    both = [Step(listed, {"a": "test.reads"}), Step(counted, {"a": "test.reads"})]
    if db.engine.dialect.name == "postgresql":
        assert [len(g) for g in _groups(both)] == [2]
    run(*both)
    assert both[0].rows == alone.rows and len(alone.rows) == 3
    assert isinstance(both[0].rows[0][1], datetime)  # a timestamp, not its text
    assert both[1].rows == [(3,)]
    none = [Step(listed, {"a": "nothing"}), Step(counted, {"a": "nothing"})]
    run(*none)
    assert none[0].rows == [] and none[1].rows == [(0,)]
    db.session.rollback()
