"""The hash-chained audit trail: recording, sealing, and detecting every kind of tampering."""

from __future__ import annotations

import threading
from datetime import UTC
from datetime import datetime
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DatabaseError

from citizen_card.audit import actions as audit
from citizen_card.audit.models import AuditBlock
from citizen_card.audit.models import AuditEvent
from citizen_card.extensions import db
from tests.conftest import is_postgres

SYSTEM = audit.Actor.system("test")


def _record(n: int, **kwargs) -> list[int]:
    ids = []
    for i in range(n):
        event = audit.record(
            "citizen.read",
            actor=audit.Actor("client", "hospital-1"),
            citizen_id=100 + i,
            purpose="挂号 booking",
            details={"fields": ["phone"], "i": i},
            **kwargs,
        )
        db.session.flush()
        ids.append(event.id)
    db.session.commit()
    return ids


def _lift_guards(app) -> None:
    """Play a database superuser who bypasses the append-only triggers (rolled back after)."""
    if is_postgres(app):
        db.session.execute(sa.text("ALTER TABLE audit_event DISABLE TRIGGER audit_event_guard"))
    else:
        db.session.execute(sa.text("DROP TRIGGER audit_event_no_update"))
        db.session.execute(sa.text("DROP TRIGGER audit_event_no_delete"))


def test_record_seal_verify(app_ctx):
    ids = _record(5)
    result = audit.seal()
    assert result.events == 5
    report = audit.verify()
    assert report.ok, report.problems
    assert (report.blocks, report.sealed_events, report.unsealed_events) == (1, 5, 0)
    assert report.head == result.head
    sealed = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.id.in_(ids))).all()
    assert all(e.block_id == result.blocks[0].id and len(e.chain_hash) == 64 for e in sealed)


def test_event_fields_are_stored(app_ctx):
    [event_id] = _record(1)
    event = db.session.get(AuditEvent, event_id)
    assert (event.actor_type, event.actor_id, event.action) == (
        "client",
        "hospital-1",
        "citizen.read",
    )
    assert event.purpose == "挂号 booking"
    assert event.details == '{"fields":["phone"],"i":0}'


def test_unknown_actor_type_refused():
    with pytest.raises(ValueError, match="actor type"):
        audit.Actor("hacker", "x")


def test_blocks_chain_to_each_other(app_ctx):
    _record(7)
    result = audit.seal(block_size=3)
    assert [b.event_count for b in result.blocks] == [3, 3, 1]
    assert result.blocks[1].prev_hash == result.blocks[0].hash
    _record(2)
    more = audit.seal()
    assert more.blocks[0].prev_hash == result.blocks[-1].hash
    assert audit.verify().ok


@pytest.mark.no_isolation
def test_sealer_waits_for_inserts_still_in_flight(committed_app):
    """A lower id committing after a higher one is sealed in place, never skipped."""
    app = committed_app
    if not is_postgres(app):
        pytest.skip("SQLite serialises writers: no insert is ever in flight beside another")
    flushed, release, sealed = threading.Event(), threading.Event(), threading.Event()

    def slow_writer() -> None:
        with app.app_context():
            audit.record("slow", actor=SYSTEM)
            db.session.flush()  # id taken, not yet committed
            flushed.set()
            release.wait(10)
            db.session.commit()
            db.session.remove()

    def sealer() -> None:
        with app.app_context():
            audit.seal()
            db.session.remove()
        sealed.set()

    writer = threading.Thread(target=slow_writer)
    writer.start()
    assert flushed.wait(10)
    with app.app_context():
        audit.record("fast", actor=SYSTEM)
        db.session.commit()  # a higher id, committed first
        db.session.remove()
    seal_thread = threading.Thread(target=sealer)
    seal_thread.start()
    assert not sealed.wait(0.5), "sealer must wait for the in-flight insert"
    release.set()
    writer.join()
    seal_thread.join()
    with app.app_context():
        report = audit.verify()
        assert report.ok, report.problems
        assert (report.sealed_events, report.unsealed_events) == (2, 0)
        block = db.session.scalars(sa.select(AuditBlock)).one()
        assert block.skipped == "[]"


def test_database_refuses_update_and_delete(app_ctx):
    [event_id] = _record(1)
    for statement in (
        sa.update(AuditEvent).where(AuditEvent.id == event_id).values(purpose="nothing"),
        sa.delete(AuditEvent).where(AuditEvent.id == event_id),
    ):
        with pytest.raises(DatabaseError, match="append-only"):
            with db.session.begin_nested():
                db.session.execute(statement)
    audit.seal()
    # Once sealed, not even the seal columns may change.
    with pytest.raises(DatabaseError, match="append-only"):
        with db.session.begin_nested():
            db.session.execute(
                sa.update(AuditEvent).where(AuditEvent.id == event_id).values(chain_hash="0" * 64)
            )


def test_edited_row_is_detected_and_located(app, app_ctx):
    ids = _record(4)
    audit.seal()
    _lift_guards(app)
    db.session.execute(
        sa.update(AuditEvent).where(AuditEvent.id == ids[2]).values(purpose="covering tracks")
    )
    report = audit.verify()
    assert not report.ok
    assert report.problems[0].startswith(f"event {ids[2]}: does not match its chain hash")


def test_deleted_row_is_detected(app, app_ctx):
    ids = _record(4)
    audit.seal()
    _lift_guards(app)
    db.session.execute(sa.delete(AuditEvent).where(AuditEvent.id == ids[1]))
    report = audit.verify()
    assert any("rows deleted" in p for p in report.problems)
    assert any(f"event {ids[2]}" in p for p in report.problems)


def test_row_inserted_into_sealed_range_is_detected(app, app_ctx):
    ids = _record(3)
    # Make a hole, as a rolled-back transaction leaves in a sequence.
    _lift_guards(app)
    db.session.execute(sa.text("DELETE FROM audit_event WHERE id = :i"), {"i": ids[1]})
    db.session.commit()
    block = audit.seal().blocks[0]
    assert audit.verify().ok
    db.session.execute(
        sa.insert(AuditEvent).values(
            id=ids[1],
            occurred_at=datetime.now(UTC) - timedelta(days=1),
            actor_type="staff",
            actor_id="mallory",
            action="card.issue",
            outcome="ok",
            details="{}",
        )
    )
    report = audit.verify()
    assert report.problems == [f"event {ids[1]}: inserted after block {block.id} was sealed"]


def test_removed_block_is_detected(app, app_ctx):
    _record(4)
    audit.seal(block_size=2)
    _lift_guards(app)
    first = db.session.scalars(sa.select(AuditBlock).order_by(AuditBlock.id)).first()
    db.session.execute(sa.delete(AuditEvent).where(AuditEvent.block_id == first.id))
    db.session.execute(sa.delete(AuditBlock).where(AuditBlock.id == first.id))
    report = audit.verify()
    assert any("does not follow" in p for p in report.problems)


def test_truncated_chain_caught_by_anchor(app, app_ctx):
    _record(4)
    result = audit.seal(block_size=2)
    anchor = result.head
    assert audit.verify(anchor=anchor).ok
    _lift_guards(app)
    last = result.blocks[-1]
    db.session.execute(sa.delete(AuditEvent).where(AuditEvent.block_id == last.id))
    db.session.execute(sa.delete(AuditBlock).where(AuditBlock.id == last.id))
    db.session.commit()
    # Without the anchor a cut-off tail looks like a shorter, valid trail...
    assert audit.verify().ok
    # ...which is why seal prints the head hash to be kept elsewhere.
    report = audit.verify(anchor=anchor)
    assert any("anchor" in p for p in report.problems)


def test_cli_seal_and_verify(app, app_ctx):
    ids = _record(3)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["audit", "seal"])
    assert result.exit_code == 0, result.output
    assert "sealed 3 events in 1 block(s); head " in result.output
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 0
    assert "audit trail OK" in result.output
    _lift_guards(app)
    db.session.execute(
        sa.update(AuditEvent).where(AuditEvent.id == ids[0]).values(actor_id="someone-else")
    )
    db.session.commit()
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 1
    assert f"BROKEN: event {ids[0]}: does not match its chain hash" in result.output


@pytest.mark.no_isolation
def test_concurrent_writers_and_sealer_never_break_the_chain(committed_app):
    """Writers on many connections and a sealer running at once: every event sealed once."""
    app = committed_app
    writers, per_writer = 6, 40
    errors: list[BaseException] = []

    def write() -> None:
        try:
            with app.app_context():
                for _ in range(per_writer):
                    audit.record("gate.tap", actor=audit.Actor("terminal", "gate-1"))
                    db.session.commit()
                db.session.remove()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    stop = threading.Event()

    def sealer() -> None:
        try:
            with app.app_context():
                while not stop.is_set():
                    audit.seal(block_size=25)
                    db.session.remove()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(writers)]
    seal_thread = threading.Thread(target=sealer)
    seal_thread.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    seal_thread.join()
    assert not errors, errors
    with app.app_context():
        audit.seal()
        report = audit.verify()
        assert report.ok, report.problems
        assert report.sealed_events == writers * per_writer
        assert report.unsealed_events == 0
