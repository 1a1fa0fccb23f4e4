"""Money safety at the gate under real concurrency: gunicorn workers on PostgreSQL."""

from __future__ import annotations

import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import timedelta

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec

from card_reader.terminal import TerminalClient
from card_reader.terminal import public_jwks
from citizen_card.audit.actions import Actor
from citizen_card.cards.actions import verify_transaction
from citizen_card.cards.inprocess import issue_virtual_card
from citizen_card.citizens import actions as citizens
from citizen_card.citizens.national_id import make_national_id
from citizen_card.extensions import db
from citizen_card.ledger import actions as ledger
from citizen_card.oauth.clients import create_client
from services.transit.fares import DEFAULT_RULES_FILE
from services.transit.fares import load_rules
from services.transit.gtfs import import_feed
from services.transit.taps import TransitTrip
from tests.conftest import is_postgres
from tests.gunicorn_server import free_port
from tests.gunicorn_server import gunicorn

SYSTEM = Actor.system("test")
GATE = "gate-race-01"


@pytest.mark.no_isolation
@pytest.mark.parametrize("path", ["careful", "bulk", "uploads"])
def test_50_taps_out_against_a_wallet_for_10(committed_app, sample_zip, tmp_path, path):
    """Fifty tap-outs hit four gunicorn workers at once; the wallet pays exactly ten fares.

    A card has one open trip in real life; fifty open trips are set up directly so fifty
    tap-outs can race on one wallet through the real tap path: one by one on a card's first
    taps (careful: the first PIN tap activates it), in bulk once it is active (online), and
    as ten offline uploads of five racing each other.
    """
    app = committed_app
    if not is_postgres(app):
        pytest.skip("the race needs PostgreSQL and several processes")
    port = free_port()
    app.config["OAUTH2_ISSUER"] = f"http://127.0.0.1:{port}"
    terminal_key = ec.generate_private_key(ec.SECP256R1())

    with app.app_context():
        import_feed(sample_zip, rules=load_rules(DEFAULT_RULES_FILE))
        citizen = citizens.create_citizen(
            {
                "national_id": make_national_id("110105", date(1980, 8, 8), 77, "F"),
                "name": "郑红",
                "district": "110105",
                "residence_type": "registered",
                "insurance_scheme": "employee",
                "employment_status": "employed",
            },
            actor=SYSTEM,
        )
        card, card_number = issue_virtual_card(
            citizen.id, actor=SYSTEM, pin="111111", puk="22222222"
        )
        gate, _ = create_client(
            name="race gate",
            kind="terminal",
            organisation="Subway",
            site=GATE,
            scopes=["transit:tap"],
            jwks=public_jwks(terminal_key),
            actor=SYSTEM,
        )
        gate_id = gate.client_id
        clearing = ledger.get_account("topup_clearing", "bank", allow_negative=True)
        ledger.post(
            "topup",
            [ledger.Leg(clearing, -3000), ledger.Leg(ledger.wallet_of(citizen.id), 3000)],
            actor=SYSTEM,
        )
        now = datetime.now(UTC)
        for i in range(50):
            db.session.add(
                TransitTrip(
                    citizen_id=citizen.id,
                    card_number=card_number,
                    status="open",
                    entry_stop="L1-TIANANMENXI",
                    entry_at=now - timedelta(minutes=60 - i),
                    entry_atc=1000 + i,
                    service_day=now.date(),
                )
            )
        db.session.commit()
        citizen_id = citizen.id
        card.select()
        card.verify_pin("111111")
        if path != "careful":
            first = card.sign_transaction(GATE, secrets.token_bytes(8), int(time.time()), 0)
            verify_transaction(first, actor=SYSTEM, terminal=GATE)  # activates the card
            db.session.commit()
        db.session.remove()
    signed = [
        card.sign_transaction(GATE, secrets.token_bytes(8), int(time.time()), 0) for i in range(50)
    ]
    with gunicorn(app, port, tmp_path / "gunicorn.log") as base:
        terminal = TerminalClient(
            client_id=gate_id,
            token_url=f"{base}/oauth/token",
            api_base=base,
            private_key=terminal_key,
        )
        token = terminal.access_token()

        def tap_out(tx):
            r = requests.post(
                f"{base}/api/v1/transit/taps",
                timeout=30,
                headers={"Authorization": f"Bearer {token}"},
                json={**tx.to_json(), "direction": "out", "stop_id": "L1-GUOMAO"},
            )
            assert r.status_code == 200, r.text
            return r.json()

        def upload(txs):
            r = requests.post(
                f"{base}/api/v1/transit/taps:batch",
                timeout=30,
                headers={"Authorization": f"Bearer {token}"},
                json={
                    "taps": [
                        {**tx.to_json(), "direction": "out", "stop_id": "L1-GUOMAO"} for tx in txs
                    ]
                },
            )
            assert r.status_code == 200, r.text
            return r.json()["results"]

        with ThreadPoolExecutor(max_workers=16) as pool:
            if path == "uploads":
                chunks = [signed[i : i + 5] for i in range(0, 50, 5)]
                results = [r for rs in pool.map(upload, chunks) for r in rs]
            else:
                results = list(pool.map(tap_out, signed))
    outcomes = [(r["result"], r.get("reason")) for r in results]
    assert outcomes.count(("accepted", None)) == 10, outcomes
    assert outcomes.count(("refused", "INSUFFICIENT_FUNDS")) == 40, outcomes
    with app.app_context():
        assert ledger.balance(ledger.wallet_of(citizen_id)) == 0
        assert ledger.verify() == []
        closed = (
            db.session.query(TransitTrip)
            .filter_by(card_number=card_number, status="closed")
            .count()
        )
        assert closed == 10
