"""Issue, activate, authenticate, lose, replace: the card's whole life, end to end."""

from __future__ import annotations

import time
from datetime import date

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select

from citizen_card.audit.models import AuditEvent
from citizen_card.extensions import db
from tests.cards.conftest import run_station_flow

VERIFY = "/api/v1/card-auth/verify"


def verify(client, gate, tx, require_pin=False):
    return client.post(
        VERIFY, headers=gate.headers, json={**tx.to_json(), "require_pin": require_pin}
    )


def test_whole_life_of_a_card(app, client, station, gate, register_citizen, issue):
    citizen_id = register_citizen()
    card = issue(citizen_id)
    # Issued but not active: the first use must prove the PIN.
    r = verify(client, gate, card.sign(gate.site))
    assert r.status_code == 403 and r.get_json()["reason"] == "PIN_REQUIRED"
    r = verify(client, gate, card.sign(gate.site, pin=True))
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["citizen_id"] == citizen_id
    assert (
        client.get(f"/api/v1/cards/{card.number}", headers=station.headers).get_json()["status"]
        == "active"
    )
    # Active: a tap without PIN is fine now.
    assert verify(client, gate, card.sign(gate.site, amount_fen=300)).status_code == 200
    # Lost: the very next request is refused, and the deny list grows.
    before = client.get("/api/v1/cards/deny-list", headers=gate.headers).get_json()["version"]
    r = client.post(
        f"/api/v1/cards/{card.number}/report-lost",
        headers=station.headers,
        json={"reason": "resident phoned the hotline"},
    )
    assert r.status_code == 200 and r.get_json()["status"] == "suspended"
    r = verify(client, gate, card.sign(gate.site))
    assert r.status_code == 403 and r.get_json()["reason"] == "CARD_SUSPENDED"
    delta = client.get(
        "/api/v1/cards/deny-list", headers=gate.headers, query_string={"since": before}
    ).get_json()
    assert delta["version"] == before + 1
    assert [(c["card_number"], c["change"]) for c in delta["changes"]] == [(card.number, "add")]
    # Replace: a new card for the same citizen; the old one is replaced for ever.
    new = run_station_flow(client, station, citizen_id, replacement=True)
    assert verify(client, gate, new.sign(gate.site, pin=True)).status_code == 200
    old_status = client.get(f"/api/v1/cards/{card.number}", headers=station.headers).get_json()
    assert old_status["status"] == "replaced"
    r = verify(client, gate, card.sign(gate.site, pin=True))
    assert r.status_code == 403 and r.get_json()["reason"] == "CARD_CANCELLED"
    # Every decision was audited, the refusals too.
    with app.app_context():
        outcomes = {
            (e.action, e.outcome)
            for e in db.session.scalars(
                select(AuditEvent).where(AuditEvent.citizen_id == citizen_id)
            )
        }
        assert {
            ("card.issue", "ok"),
            ("card.activate", "ok"),
            ("card.report_lost", "ok"),
            ("card.replaced", "ok"),
        } <= outcomes
        refused = db.session.scalars(
            select(AuditEvent).where(
                AuditEvent.subject == f"card:{card.number}", AuditEvent.outcome == "refused"
            )
        ).all()
        assert {e.details for e in refused} >= {
            '{"reason":"PIN_REQUIRED"}',
            '{"reason":"CARD_SUSPENDED"}',
        }


def test_one_held_card_per_citizen(client, station, register_citizen, issue):
    citizen_id = register_citizen()
    issue(citizen_id)
    r = client.post(
        "/api/v1/cards/issuance", headers=station.headers, json={"citizen_id": citizen_id}
    )
    assert r.status_code == 409 and r.get_json()["code"] == "ISSUANCE_REFUSED"
    assert r.get_json()["card_status"] == "issued"


def test_database_enforces_one_held_card(app, client, station, register_citizen, issue):
    import pytest
    from sqlalchemy.exc import IntegrityError

    from citizen_card.cards.models import Card

    citizen_id = register_citizen()
    issued = issue(citizen_id)
    with app.app_context():
        original = db.session.scalars(select(Card).where(Card.card_number == issued.number)).one()
        twin = Card(
            **{
                c.name: getattr(original, c.name)
                for c in Card.__table__.columns
                if c.name not in ("id", "card_number", "certificate_serial")
            },
            card_number="6210000000000000001",
            certificate_serial="dead",
        )
        db.session.add(twin)
        with pytest.raises(IntegrityError):
            db.session.flush()
        db.session.rollback()


def test_unknown_and_deceased_citizens_refused(client, station, register_citizen):
    r = client.post("/api/v1/cards/issuance", headers=station.headers, json={"citizen_id": 999999})
    assert r.status_code == 409 and r.get_json()["detail"] == "unknown citizen"
    citizen_id = register_citizen()
    client.post(
        f"/api/v1/citizens/{citizen_id}/life-events",
        headers=station.headers,
        json={
            "event": "deceased",
            "effective_date": date.today().isoformat(),
            "reason": "notice 7",
        },
    )
    r = client.post(
        "/api/v1/cards/issuance", headers=station.headers, json={"citizen_id": citizen_id}
    )
    assert r.status_code == 409 and r.get_json()["citizen_status"] == "deceased"


def test_life_event_cancels_cards_in_the_same_transaction(
    client, station, gate, register_citizen, issue
):
    citizen_id = register_citizen()
    card = issue(citizen_id)
    assert verify(client, gate, card.sign(gate.site, pin=True)).status_code == 200
    r = client.post(
        f"/api/v1/citizens/{citizen_id}/life-events",
        headers=station.headers,
        json={
            "event": "moved_away",
            "effective_date": date.today().isoformat(),
            "reason": "迁出 notice 12",
        },
    )
    assert r.status_code == 200
    assert (
        client.get(f"/api/v1/cards/{card.number}", headers=station.headers).get_json()["status"]
        == "cancelled"
    )
    r = verify(client, gate, card.sign(gate.site, pin=True))
    assert r.status_code == 403 and r.get_json()["reason"] == "CARD_CANCELLED"
    changes = client.get("/api/v1/cards/deny-list", headers=gate.headers).get_json()["changes"]
    assert (card.number, "add", "moved_away") in {
        (c["card_number"], c["change"], c["reason"]) for c in changes
    }


def test_unsuspend_needs_card_and_pin_at_a_station(client, station, gate, register_citizen, issue):
    citizen_id = register_citizen()
    card = issue(citizen_id)
    client.post(f"/api/v1/cards/{card.number}/report-lost", headers=station.headers, json={})
    url = f"/api/v1/cards/{card.number}/unsuspend"
    no_pin = card.sign(station.site)
    r = client.post(url, headers=station.headers, json={"transaction": no_pin.to_json()})
    assert r.status_code == 403 and r.get_json()["reason"] == "PIN_REQUIRED"
    at_gate = card.sign(gate.site, pin=True)  # signed for another terminal
    r = client.post(url, headers=station.headers, json={"transaction": at_gate.to_json()})
    assert r.status_code == 403 and r.get_json()["reason"] == "TERMINAL_MISMATCH"
    proof = card.sign(station.site, pin=True)
    r = client.post(url, headers=station.headers, json={"transaction": proof.to_json()})
    assert r.status_code == 200 and r.get_json()["status"] == "active"
    # The gate may not unsuspend, and the same proof cannot be used twice.
    r = client.post(url, headers=gate.headers, json={"transaction": proof.to_json()})
    assert r.status_code == 403
    client.post(f"/api/v1/cards/{card.number}/report-lost", headers=station.headers, json={})
    r = client.post(url, headers=station.headers, json={"transaction": proof.to_json()})
    assert r.status_code == 403 and r.get_json()["reason"] == "REPLAYED"
    delta = client.get("/api/v1/cards/deny-list", headers=gate.headers).get_json()["changes"]
    mine = [c["change"] for c in delta if c["card_number"] == card.number]
    assert mine == ["add", "remove", "add"]


def test_refusal_reasons(client, gate, register_citizen, issue, app):
    card = issue(register_citizen())
    assert verify(client, gate, card.sign(gate.site, pin=True)).status_code == 200
    other = issue(register_citizen())
    good = card.sign(gate.site)
    # Tampered: change the amount after signing.
    tampered = good.to_json() | {"amount_fen": good.amount_fen + 1}
    r = client.post(VERIFY, headers=gate.headers, json=tampered)
    assert r.get_json()["reason"] == "BAD_SIGNATURE"
    # Another card's signature on this card's data.
    foreign = other.sign(gate.site)
    forged = good.to_json() | {"signature": foreign.to_json()["signature"]}
    r = client.post(VERIFY, headers=gate.headers, json=forged)
    assert r.get_json()["reason"] == "BAD_SIGNATURE"
    # Replay of an accepted transaction.
    assert verify(client, gate, good).status_code == 200
    assert verify(client, gate, good).get_json()["reason"] == "REPLAYED"
    # A clock far off, online.
    r = verify(client, gate, card.sign(gate.site, at=int(time.time()) - 3600))
    assert r.get_json()["reason"] == "CLOCK_SKEW"
    # A terminal presenting another terminal's transaction.
    r = verify(client, gate, card.sign("gate-somewhere-else"))
    assert r.get_json()["reason"] == "TERMINAL_MISMATCH"
    # PIN demanded by the service.
    assert (
        verify(client, gate, card.sign(gate.site), require_pin=True).get_json()["reason"]
        == "PIN_REQUIRED"
    )


def test_unknown_and_foreign_ca_cards_refused(client, gate):
    from card_reader.card import CitizenCardClient
    from card_reader.issuer import Issuer
    from card_reader.issuer import personalize
    from card_reader.issuer import random_card_number
    from card_reader.virtual import VirtualCard
    from card_reader.virtual import VirtualReader
    from tests.cards.conftest import IssuedCard

    # A card made by a foreign CA: its number is not ours, so nothing vouches for its key.
    foreign = CitizenCardClient(VirtualReader(VirtualCard.create()))
    number = random_card_number("6210")
    personalize(
        foreign,
        issuer=Issuer.generate_test_issuer("Evil CA"),
        card_number=number,
        holder_name="X",
        citizen_ref="X",
        valid_from=date(2025, 1, 1),
        valid_until=date(2030, 1, 1),
        pin="111111",
        puk="11111111",
    )
    tx = IssuedCard(foreign, number, 0).sign(gate.site)
    r = verify(client, gate, tx)
    assert r.status_code == 403 and r.get_json()["reason"] == "UNKNOWN_CARD"


def test_expired_card_refused(app, client, gate, register_citizen, issue):
    from datetime import UTC
    from datetime import datetime
    from datetime import timedelta

    from sqlalchemy import update

    from citizen_card.cards.models import Card

    card = issue(register_citizen())
    with app.app_context():
        db.session.execute(
            update(Card)
            .where(Card.card_number == card.number)
            .values(expires_at=datetime.now(UTC) - timedelta(days=1))
        )
        db.session.commit()
    r = verify(client, gate, card.sign(gate.site, pin=True))
    assert r.get_json()["reason"] == "CARD_EXPIRED"


def test_certificate_binds_number_and_key_and_status_is_served(
    client, gate, register_citizen, issue
):
    card = issue(register_citizen())
    pem = client.get("/api/v1/pki/issuer.pem")
    assert pem.status_code == 200
    ca = x509.load_pem_x509_certificate(pem.data)
    card.card.select()
    data = card.card.read_card_data()
    cert = x509.load_der_x509_certificate(data.card_certificate)
    cert.verify_directly_issued_by(ca)
    assert cert.subject.get_attributes_for_oid(x509.NameOID.SERIAL_NUMBER)[0].value == card.number
    on_card = card.card.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    assert (
        cert.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        == on_card
    )
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days >= 5 * 365 - 1
    status = client.get(f"/api/v1/pki/cards/{card.number}/status", headers=gate.headers)
    assert status.get_json()["status"] == "good"
