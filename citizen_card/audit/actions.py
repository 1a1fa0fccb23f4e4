"""Recording audit events (hot path), sealing them into blocks, verifying the chain.

Recording is a plain INSERT in the caller's transaction: the event commits or rolls back with
the decision it records, and writers never wait on each other. Sealing (``flask audit seal``)
later walks the new rows in id order and chains them: each row's ``chain_hash`` is
``sha256(previous chain hash || canonical row)``, and each block commits to its first and last
id, the ids that had no row, and the block before it. See docs/audit.md.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from typing import Any

from flask import g
from flask import has_request_context
from sqlalchemy import DateTime
from sqlalchemy import bindparam
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy import update

from citizen_card.audit.models import AuditBlock
from citizen_card.audit.models import AuditEvent
from citizen_card.bulk import Step
from citizen_card.bulk import sql
from citizen_card.extensions import db

GENESIS_HASH = "0" * 64
ACTOR_TYPES = ("client", "terminal", "staff", "resident", "system")
# PostgreSQL advisory lock ids. Every transaction that inserts audit rows holds the writers'
# lock shared (a statement trigger takes it, see migration 0001); the sealer takes it
# exclusively for an instant to learn an id below which no insert is still in flight.
SEAL_LOCK_KEY = 0x5EA1_A0D1
WRITERS_LOCK_KEY = 0x5EA1_A0D2


@dataclass(frozen=True)
class Actor:
    """Who acted: an OAuth client, a terminal, station staff, a resident, or the system."""

    type: str
    id: str

    def __post_init__(self) -> None:
        if self.type not in ACTOR_TYPES:
            raise ValueError(f"actor type must be one of {ACTOR_TYPES}, not {self.type!r}")

    @classmethod
    def system(cls, name: str = "system") -> Actor:
        """The platform itself (jobs, CLI commands)."""
        return cls("system", name)


def _utc(moment: datetime) -> datetime:
    # SQLite hands datetimes back naive; we only ever store UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def canonical_details(details: dict[str, Any] | None) -> str:
    """Deterministic JSON for the details column."""
    return json.dumps(details or {}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def record(
    action: str,
    *,
    actor: Actor,
    citizen_id: int | None = None,
    subject: str | None = None,
    purpose: str | None = None,
    outcome: str = "ok",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add an audit event to the current transaction; the caller's commit makes it durable."""
    event = AuditEvent(
        **audit_row(
            action,
            actor=actor,
            citizen_id=citizen_id,
            subject=subject,
            purpose=purpose,
            outcome=outcome,
            details=details,
        )
    )
    db.session.add(event)
    return event


_INSERT_EVENTS = sql(
    "INSERT INTO audit_event (occurred_at, actor_type, actor_id, action, outcome, citizen_id,"
    " subject, purpose, request_id, details) VALUES (:occurred_at, :actor_type, :actor_id,"
    " :action, :outcome, :citizen_id, :subject, :purpose, :request_id, :details)",
    types={"occurred_at": DateTime(timezone=True)},
)


def audit_row(
    action: str,
    *,
    actor: Actor,
    citizen_id: int | None = None,
    subject: str | None = None,
    purpose: str | None = None,
    outcome: str = "ok",
    details: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """One event as :func:`record` writes it, for :func:`audit_step` (hot paths)."""
    return {
        "occurred_at": at or datetime.now(UTC),
        "actor_type": actor.type,
        "actor_id": actor.id,
        "action": action,
        "outcome": outcome,
        "citizen_id": citizen_id,
        "subject": subject,
        "purpose": purpose,
        "request_id": getattr(g, "request_id", None) if has_request_context() else None,
        "details": canonical_details(details),
    }


def audit_step(rows: list[dict[str, Any]]) -> Step:
    """A bulk step inserting these events in the caller's transaction (no ORM)."""
    return Step(_INSERT_EVENTS, rows)


def _row_bytes(row: Any) -> bytes:
    fields = [
        row.id,
        _utc(row.occurred_at).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        row.actor_type,
        row.actor_id,
        row.action,
        row.outcome,
        row.citizen_id,
        row.subject,
        row.purpose,
        row.request_id,
        row.details,
    ]
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def chain(prev: str, row: Any) -> str:
    """The chain hash of row, following the chain hash prev."""
    return hashlib.sha256(bytes.fromhex(prev) + _row_bytes(row)).hexdigest()


def block_hash(
    prev_hash: str, last_chain: str, first: int, last: int, count: int, skipped: str
) -> str:
    """A block's hash: commits to its predecessor, its rows (via the last chain hash) and gaps."""
    header = json.dumps([prev_hash, last_chain, first, last, count, skipped], separators=(",", ":"))
    return hashlib.sha256(header.encode("ascii")).hexdigest()


def _ranges(ids: list[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for i in ids:
        if out and out[-1][1] == i - 1:
            out[-1][1] = i
        else:
            out.append([i, i])
    return out


def _expand(ranges_json: str) -> set[int]:
    return {i for a, b in json.loads(ranges_json) for i in range(a, b + 1)}


_EVENT_COLUMNS = (
    AuditEvent.id,
    AuditEvent.occurred_at,
    AuditEvent.actor_type,
    AuditEvent.actor_id,
    AuditEvent.action,
    AuditEvent.outcome,
    AuditEvent.citizen_id,
    AuditEvent.subject,
    AuditEvent.purpose,
    AuditEvent.request_id,
    AuditEvent.details,
    AuditEvent.block_id,
    AuditEvent.chain_hash,
)


@dataclass
class SealResult:
    """What one sealing pass did."""

    blocks: list[AuditBlock] = field(default_factory=list)

    @property
    def events(self) -> int:
        """Events sealed in this pass."""
        return sum(b.event_count for b in self.blocks)

    @property
    def head(self) -> str | None:
        """Hash of the newest block written by this pass."""
        return self.blocks[-1].hash if self.blocks else None


def seal(*, block_size: int = 5000, max_blocks: int = 1000) -> SealResult:
    """Chain every committed event into new blocks; one commit per block."""
    result = SealResult()
    for _ in range(max_blocks):
        block = _seal_one(block_size=block_size)
        if block is None:
            break
        result.blocks.append(block)
    return result


def _settled_upper_bound(start: int) -> int | None:
    """The highest committed id such that no lower id can still be committed later.

    Ids come from a sequence in insertion order but commit in any order: a gap may be a
    rollback, or a transaction still in flight. On PostgreSQL we wait, for an instant, for the
    in-flight writers (they hold WRITERS_LOCK_KEY shared); on SQLite writers are serialised.
    """
    session = db.session
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:
        session.execute(text("SELECT pg_advisory_lock(:k)"), {"k": WRITERS_LOCK_KEY})
    try:
        return session.scalar(select(func.max(AuditEvent.id)).where(AuditEvent.id >= start))
    finally:
        if postgres:
            session.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": WRITERS_LOCK_KEY})


def _seal_one(*, block_size: int) -> AuditBlock | None:
    session = db.session
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SEAL_LOCK_KEY})
    last_block = session.scalars(select(AuditBlock).order_by(AuditBlock.id.desc()).limit(1)).first()
    prev_hash = last_block.hash if last_block else GENESIS_HASH
    start = last_block.last_event_id + 1 if last_block else 1
    upper = _settled_upper_bound(start)
    if upper is None:
        session.rollback()
        return None
    rows = session.execute(
        select(*_EVENT_COLUMNS)
        .where(AuditEvent.id >= start, AuditEvent.id <= upper)
        .order_by(AuditEvent.id)
        .limit(block_size)
    ).all()
    if not rows:
        session.rollback()
        return None
    last_id = rows[-1].id
    present = {r.id for r in rows}
    skipped = json.dumps(_ranges([i for i in range(start, last_id + 1) if i not in present]))
    h = prev_hash
    updates = []
    for row in rows:
        h = chain(h, row)
        updates.append({"b_id": row.id, "b_hash": h})
    block = AuditBlock(
        sealed_at=datetime.now(UTC),
        first_event_id=start,
        last_event_id=last_id,
        event_count=len(rows),
        skipped=skipped,
        prev_hash=prev_hash,
        hash=block_hash(prev_hash, h, start, last_id, len(rows), skipped),
    )
    session.add(block)
    session.flush()
    for item in updates:
        item["b_block"] = block.id
    table = AuditEvent.__table__
    session.connection().execute(
        update(table)  # type: ignore[arg-type]
        .where(table.c.id == bindparam("b_id"))
        .values(block_id=bindparam("b_block"), chain_hash=bindparam("b_hash")),
        updates,
    )
    session.commit()
    return block


@dataclass
class VerifyReport:
    """Outcome of a verification: counts and every break found, first one first."""

    blocks: int = 0
    sealed_events: int = 0
    unsealed_events: int = 0
    head: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the chain is intact."""
        return not self.problems


def _rows_between(first: int, last: int) -> Iterator[Any]:
    # Streamed in pages: the trail can hold millions of rows.
    page = 10000
    cursor = first
    while cursor <= last:
        rows = db.session.execute(
            select(*_EVENT_COLUMNS)
            .where(AuditEvent.id >= cursor, AuditEvent.id <= last)
            .order_by(AuditEvent.id)
            .limit(page)
        ).all()
        if not rows:
            return
        yield from rows
        cursor = rows[-1].id + 1


def verify(*, anchor: str | None = None, max_problems: int = 50) -> VerifyReport:
    """Recompute every chain and block hash; report where the trail was changed."""
    report = VerifyReport()
    prev_hash = GENESIS_HASH
    expected_first = 1
    anchor_seen = anchor is None

    def problem(message: str) -> None:
        if len(report.problems) < max_problems:
            report.problems.append(message)

    for block in db.session.scalars(select(AuditBlock).order_by(AuditBlock.id)):
        report.blocks += 1
        if block.prev_hash != prev_hash:
            problem(
                f"block {block.id}: does not follow block hash {prev_hash[:12]}… (missing block?)"
            )
        if block.first_event_id != expected_first:
            problem(
                f"block {block.id}: starts at event {block.first_event_id},"
                f" expected {expected_first} (events or a block removed)"
            )
        skipped = _expand(block.skipped)
        h = block.prev_hash
        count = 0
        for row in _rows_between(block.first_event_id, block.last_event_id):
            if row.id in skipped:
                problem(f"event {row.id}: inserted after block {block.id} was sealed")
                continue
            if row.block_id != block.id:
                problem(f"event {row.id}: detached from block {block.id}")
            expected = chain(h, row)
            if row.chain_hash != expected:
                problem(
                    f"event {row.id}: does not match its chain hash in block {block.id}"
                    " (this row, or the row before it, was changed or removed)"
                )
            # Carry on from the stored hash so one edit is reported once, not for every row after.
            h = row.chain_hash or expected
            count += 1
        expected_ids = block.last_event_id - block.first_event_id + 1 - len(skipped)
        if count != block.event_count or count != expected_ids:
            problem(
                f"block {block.id}: holds {count} events, sealed with {block.event_count}"
                " (rows deleted)"
            )
        if (
            block_hash(
                block.prev_hash,
                h,
                block.first_event_id,
                block.last_event_id,
                block.event_count,
                block.skipped,
            )
            != block.hash
        ):
            problem(f"block {block.id}: block hash does not match its contents")
        report.sealed_events += count
        prev_hash = block.hash
        expected_first = block.last_event_id + 1
        anchor_seen = anchor_seen or block.hash == anchor
    report.head = prev_hash if report.blocks else None
    report.unsealed_events = (
        db.session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.id >= expected_first)
        )
        or 0
    )
    stray = db.session.scalar(
        select(func.count())
        .select_from(AuditEvent)
        .where(AuditEvent.id >= expected_first, AuditEvent.block_id.is_not(None))
    )
    if stray:
        problem(f"{stray} events after the last block claim to be sealed")
    if not anchor_seen:
        problem(f"anchor {anchor[:12] if anchor else ''}… is not in the chain (blocks removed?)")
    db.session.rollback()
    return report
