"""Wallets and the ledger: top-ups, idempotency, no overdraft under concurrency, verification."""

from __future__ import annotations

import threading
import uuid
from datetime import date

import pytest
from sqlalchemy import update

from citizen_card.audit.actions import Actor
from citizen_card.citizens import actions as citizens
from citizen_card.citizens.national_id import make_national_id
from citizen_card.extensions import db
from citizen_card.ledger import actions as ledger
from citizen_card.ledger.models import LedgerAccount
from tests.citizens.conftest import citizen_data
from tests.conftest import is_postgres

SYSTEM = Actor.system("test")


@pytest.fixture()
def citizen_id(app):
    with app.app_context():
        return citizens.create_citizen(citizen_data(), actor=SYSTEM).id


def topup(client, headers, citizen_id, amount, key=None, **extra):
    return client.post(
        f"/api/v1/wallets/{citizen_id}/topups",
        json={"amount_fen": amount, **extra},
        headers={**headers, "Idempotency-Key": key or str(uuid.uuid4())},
    )


def test_topup_balance_and_statement(app, client, bearer, citizen_id):
    bank = bearer("wallet:topup", organisation="ICBC Beijing")
    r = topup(client, bank, citizen_id, 5000, reference="icbc-001")
    assert r.status_code == 201, r.get_json()
    assert r.get_json()["balance_fen"] == 5000
    topup(client, bank, citizen_id, 250)
    station = bearer("wallet:read", kind="station")
    assert client.get(f"/api/v1/wallets/{citizen_id}", headers=station).get_json() == {
        "citizen_id": citizen_id,
        "balance_fen": 5250,
    }
    lines = client.get(f"/api/v1/wallets/{citizen_id}/statement", headers=station).get_json()
    assert [(x["kind"], x["amount_fen"]) for x in lines] == [("topup", 250), ("topup", 5000)]
    assert lines[1]["reference"] == "icbc-001"
    with app.app_context():
        assert ledger.verify() == []


def test_idempotency_same_key_same_body_replays(app, client, bearer, citizen_id):
    bank = bearer("wallet:topup")
    first = topup(client, bank, citizen_id, 1000, key="k-1")
    again = topup(client, bank, citizen_id, 1000, key="k-1")
    assert again.status_code == 201 and again.get_json() == first.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"
    station = bearer("wallet:read", kind="station")
    assert (
        client.get(f"/api/v1/wallets/{citizen_id}", headers=station).get_json()["balance_fen"]
        == 1000
    )
    other = topup(client, bank, citizen_id, 2000, key="k-1")
    assert other.status_code == 409 and other.get_json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    # Keys belong to a client: another bank may use the same string.
    assert topup(client, bearer("wallet:topup"), citizen_id, 2000, key="k-1").status_code == 201


def test_refusal_is_replayed_too(client, bearer, citizen_id):
    bank = bearer("wallet:topup")
    r = topup(client, bank, citizen_id, 0, key="zero")
    assert r.status_code == 422 and r.get_json()["code"] == "TOPUP_REFUSED"
    again = topup(client, bank, citizen_id, 0, key="zero")
    assert again.status_code == 422 and again.get_json()["type"] == r.get_json()["type"]
    assert again.get_json()["detail"] == r.get_json()["detail"]


def test_money_needs_a_key_and_integer_fen(client, bearer, citizen_id):
    bank = bearer("wallet:topup")
    r = client.post(f"/api/v1/wallets/{citizen_id}/topups", json={"amount_fen": 100}, headers=bank)
    assert r.status_code == 428 and r.get_json()["code"] == "IDEMPOTENCY_KEY_REQUIRED"
    for bad in (12.5, "100", 1e3):
        r = topup(client, bank, citizen_id, bad)
        assert r.status_code == 422, bad


def test_partner_reads_are_audited(client, bearer, citizen_id, app):
    from sqlalchemy import select

    from citizen_card.audit.models import AuditEvent

    partner = bearer("wallet:read")
    r = client.get(
        f"/api/v1/wallets/{citizen_id}", headers=partner, query_string={"purpose": "核对余额"}
    )
    assert r.status_code == 200
    assert client.get("/api/v1/wallets/999999", headers=partner).status_code == 404
    with app.app_context():
        event = db.session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "wallet.balance", AuditEvent.citizen_id == citizen_id
            )
        ).one()
        assert event.actor_type == "client" and event.purpose == "核对余额"


def test_post_refuses_unbalanced_and_overdraft(app_ctx, citizen_id):
    wallet = ledger.wallet_of(citizen_id)
    revenue = ledger.get_account("revenue", "transit", allow_negative=True)
    with pytest.raises(ledger.UnbalancedEntry):
        ledger.post("fare", [ledger.Leg(wallet, -100), ledger.Leg(revenue, 99)], actor=SYSTEM)
    with pytest.raises(ledger.InsufficientFunds):
        ledger.post("fare", [ledger.Leg(wallet, -100), ledger.Leg(revenue, 100)], actor=SYSTEM)
    assert ledger.balance(wallet) == 0 and ledger.verify() == []


@pytest.mark.books_tampered
def test_verify_finds_a_tampered_balance(app, app_ctx, citizen_id):
    wallet = ledger.wallet_of(citizen_id)
    clearing = ledger.get_account("topup_clearing", "bank", allow_negative=True)
    ledger.post("topup", [ledger.Leg(clearing, -500), ledger.Leg(wallet, 500)], actor=SYSTEM)
    db.session.commit()
    assert ledger.verify() == []
    db.session.execute(
        update(LedgerAccount).where(LedgerAccount.id == wallet.id).values(balance_fen=900)
    )
    problems = ledger.verify()
    assert any("cached balance 900 fen, postings sum to 500 fen" in p for p in problems)
    result = app.test_cli_runner().invoke(args=["ledger", "verify"])
    assert result.exit_code == 1 and "BROKEN" in result.output


@pytest.mark.no_isolation
def test_racing_debits_never_overspend(committed_app):
    """40 threads each try to spend 100 fen from a wallet holding 1,000: exactly 10 succeed."""
    app = committed_app
    if not is_postgres(app):
        pytest.skip("SQLite serialises writers; the race needs PostgreSQL")
    with app.app_context():
        cid = citizens.create_citizen(
            {
                "national_id": make_national_id("110102", date(1960, 2, 2), 9, "F"),
                "name": "周敏",
                "district": "110102",
                "residence_type": "registered",
                "insurance_scheme": "employee",
                "employment_status": "retired",
            },
            actor=SYSTEM,
        ).id
        clearing = ledger.get_account("topup_clearing", "bank", allow_negative=True)
        ledger.post(
            "topup",
            [ledger.Leg(clearing, -1000), ledger.Leg(ledger.wallet_of(cid), 1000)],
            actor=SYSTEM,
        )
        db.session.commit()
        db.session.remove()
    barrier = threading.Barrier(40)
    results: list[str] = []

    def spend() -> None:
        with app.app_context():
            barrier.wait()
            try:
                wallet = ledger.wallet_of(cid)
                revenue = ledger.get_account("revenue", "transit", allow_negative=True)
                ledger.post(
                    "fare", [ledger.Leg(wallet, -100), ledger.Leg(revenue, 100)], actor=SYSTEM
                )
                db.session.commit()
                results.append("paid")
            except ledger.InsufficientFunds:
                db.session.rollback()
                results.append("refused")
            finally:
                db.session.remove()

    threads = [threading.Thread(target=spend) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("paid") == 10 and results.count("refused") == 30
    with app.app_context():
        assert ledger.balance(ledger.wallet_of(cid)) == 0
        assert ledger.verify() == []


@pytest.mark.no_isolation
def test_same_idempotency_key_racing(committed_app):
    """Ten identical top-ups with one key at the same instant move money once."""
    app = committed_app
    if not is_postgres(app):
        pytest.skip("SQLite serialises writers; the race needs PostgreSQL")
    from citizen_card.ledger.idempotency import run_once
    from citizen_card.ledger.wallets import topup as do_topup

    with app.app_context():
        cid = citizens.create_citizen(
            {
                "national_id": make_national_id("110106", date(1999, 9, 9), 19, "M"),
                "name": "吴凡",
                "district": "110106",
                "residence_type": "resident",
                "insurance_scheme": "resident",
                "employment_status": "employed",
            },
            actor=SYSTEM,
        ).id
        db.session.remove()
    barrier = threading.Barrier(10)
    answers: list[tuple[int, object, bool]] = []

    def once() -> None:
        with app.app_context():
            barrier.wait()

            def work():
                entry, balance = do_topup(
                    cid, 700, organisation="bank", actor=SYSTEM, reference="r"
                )
                return 201, {"entry_id": entry.id, "balance_fen": balance}

            answers.append(run_once("bank-client", "same-key", {"amount": 700}, work))
            db.session.remove()

    threads = [threading.Thread(target=once) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({json_body(a) for a in answers}) == 1
    assert sum(1 for a in answers if not a[2]) == 1
    with app.app_context():
        assert ledger.balance(ledger.wallet_of(cid)) == 700
        assert ledger.verify() == []


def json_body(answer):
    import json

    return json.dumps(answer[1], sort_keys=True)
