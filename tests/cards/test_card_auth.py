"""Card + PIN login at a terminal, and the replay race on PostgreSQL."""

from __future__ import annotations

import base64
import secrets
import threading
import time
from datetime import date

import pytest

from citizen_card.audit.actions import Actor
from citizen_card.cards.inprocess import issue_virtual_card
from citizen_card.extensions import db
from tests.cards.conftest import PIN
from tests.cards.conftest import PUK
from tests.conftest import is_postgres


def login(client, gate, card):
    r = client.post("/api/v1/card-auth/challenges", headers=gate.headers)
    assert r.status_code == 201, r.get_json()
    challenge = r.get_json()["challenge"]
    card.card.select()
    card.card.verify_pin(PIN)
    signature = card.card.internal_authenticate(bytes.fromhex(challenge))
    body = {
        "card_number": card.number,
        "challenge": challenge,
        "signature": base64.b64encode(signature).decode(),
    }
    return (
        challenge,
        body,
        client.post("/api/v1/card-auth/sessions", headers=gate.headers, json=body),
    )


def test_card_login_gives_a_short_resident_token(client, gate, register_citizen, issue):
    citizen_id = register_citizen()
    card = issue(citizen_id)
    _challenge, body, r = login(client, gate, card)
    assert r.status_code == 201, r.get_json()
    token = r.get_json()
    assert token["expires_in"] == 300
    # Limited to what the terminal may do for a resident.
    assert set(token["scope"].split()) == {
        "wallet:read",
        "cards:read",
        "cards:suspend",
        "transit:read",
    }
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token['access_token']}"})
    assert me.get_json()["kind"] == "resident"
    # The login activated the card.
    status = client.get(f"/api/v1/cards/{card.number}", headers=gate.headers).get_json()
    assert status["status"] == "active"
    # The same signed challenge cannot be used again.
    again = client.post("/api/v1/card-auth/sessions", headers=gate.headers, json=body)
    assert again.status_code == 403 and again.get_json()["reason"] == "CHALLENGE_INVALID"


def test_resident_token_reports_only_own_card_lost(client, gate, register_citizen, issue):
    mine = issue(register_citizen())
    other = issue(register_citizen())
    _c, _b, r = login(client, gate, mine)
    headers = {"Authorization": f"Bearer {r.get_json()['access_token']}"}
    r = client.post(f"/api/v1/cards/{other.number}/report-lost", headers=headers, json={})
    assert r.status_code == 404
    r = client.post(f"/api/v1/cards/{mine.number}/report-lost", headers=headers, json={})
    assert r.status_code == 200 and r.get_json()["status"] == "suspended"


def test_resident_sees_only_own_wallet(client, gate, register_citizen, issue):
    mine, other = register_citizen(), register_citizen()
    card = issue(mine)
    _c, _b, r = login(client, gate, card)
    headers = {"Authorization": f"Bearer {r.get_json()['access_token']}"}
    r = client.get(f"/api/v1/wallets/{mine}", headers=headers)
    assert r.status_code == 200 and r.get_json() == {"citizen_id": mine, "balance_fen": 0}
    assert client.get(f"/api/v1/wallets/{other}", headers=headers).status_code == 404
    assert client.get(f"/api/v1/wallets/{other}/statement", headers=headers).status_code == 404


def test_challenge_bound_to_terminal_and_signature_checked(
    client, gate, bearer, register_citizen, issue
):
    card = issue(register_citizen())
    other = issue(register_citizen())
    r = client.post("/api/v1/card-auth/challenges", headers=gate.headers)
    challenge = r.get_json()["challenge"]
    other.card.select()
    other.card.verify_pin(PIN)
    wrong_sig = other.card.internal_authenticate(bytes.fromhex(challenge))
    body = {
        "card_number": card.number,
        "challenge": challenge,
        "signature": base64.b64encode(wrong_sig).decode(),
    }
    r = client.post("/api/v1/card-auth/sessions", headers=gate.headers, json=body)
    assert r.get_json()["reason"] == "BAD_SIGNATURE"
    # A challenge issued to one terminal is useless at another.
    r = client.post("/api/v1/card-auth/challenges", headers=gate.headers)
    station2 = bearer("card_auth:login", kind="station", site="station-2")
    card.card.select()
    card.card.verify_pin(PIN)
    sig = card.card.internal_authenticate(bytes.fromhex(r.get_json()["challenge"]))
    body = {
        "card_number": card.number,
        "challenge": r.get_json()["challenge"],
        "signature": base64.b64encode(sig).decode(),
    }
    r = client.post("/api/v1/card-auth/sessions", headers=station2, json=body)
    assert r.get_json()["reason"] == "CHALLENGE_INVALID"


@pytest.mark.no_isolation
def test_same_transaction_from_20_threads_is_accepted_once(committed_app):
    """Twenty copies of one signed tap at the same instant: exactly one is accepted."""
    app = committed_app
    if not is_postgres(app):
        pytest.skip("SQLite serialises writers; the race needs PostgreSQL")
    from citizen_card.cards import actions
    from citizen_card.citizens import actions as citizens
    from citizen_card.citizens.national_id import make_national_id

    actor = Actor("terminal", "gate-race")
    with app.app_context():
        citizen = citizens.create_citizen(
            {
                "national_id": make_national_id("110101", date(1970, 1, 1), 3, "M"),
                "name": "钱多多",
                "district": "110101",
                "residence_type": "registered",
                "insurance_scheme": "employee",
                "employment_status": "employed",
            },
            actor=actor,
        )
        card, _number = issue_virtual_card(citizen.id, actor=actor, pin=PIN, puk=PUK)
        db.session.remove()
    card.select()
    card.verify_pin(PIN)
    tx = card.sign_transaction("gate-race", secrets.token_bytes(8), int(time.time()), 300)
    barrier = threading.Barrier(20)
    outcomes: list[str] = []
    lock = threading.Lock()

    def tap() -> None:
        with app.app_context():
            barrier.wait()
            try:
                actions.verify_transaction(tx, actor=actor, terminal="gate-race")
                db.session.commit()
                result = "accepted"
            except actions.CardRefused as refused:
                result = refused.reason
            finally:
                db.session.remove()
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=tap) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("accepted") == 1, outcomes
    assert outcomes.count("REPLAYED") == 19, outcomes
