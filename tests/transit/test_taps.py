"""Gate taps end to end: real cards, real fares from the sample network, real wallets."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from citizen_card.audit.actions import Actor
from citizen_card.extensions import db
from citizen_card.ledger import actions as ledger
from services.transit.schemas import TapResultSchema
from services.transit.taps import TransitMonthSpend
from services.transit.taps import TransitTrip
from services.transit.taps import close_day
from tests.cards.conftest import gate  # noqa: F401  (fixtures shared with the card tests)
from tests.cards.conftest import issue  # noqa: F401
from tests.cards.conftest import register_citizen  # noqa: F401
from tests.cards.conftest import station  # noqa: F401

TAPS = "/api/v1/transit/taps"
A, B = "L1-TIANANMENXI", "L1-GUOMAO"  # 6,000 m apart: 3 元
FAR_A, FAR_B = "L1-PINGGUOYUAN", "L10-FENZHONGSI"  # 32,100 m: 7 元
SYSTEM = Actor.system("test")


def active_rider(app, client, gate, register_citizen, issue, amount):  # noqa: F811
    """A resident whose card is active (first PIN tap done) and whose wallet holds amount."""
    citizen_id = register_citizen()
    card = issue(citizen_id)
    r = client.post(
        "/api/v1/card-auth/verify",
        headers=gate.headers,
        json=card.sign(gate.site, pin=True).to_json(),
    )
    assert r.status_code == 200
    fund(app, citizen_id, amount)
    return card


@pytest.fixture()
def rider(app, network, client, gate, register_citizen, issue):  # noqa: F811
    """A resident with an active card and 20 元 in the wallet."""
    return active_rider(app, client, gate, register_citizen, issue, 2000)


def fund(app, citizen_id, amount):
    with app.app_context():
        clearing = ledger.get_account("topup_clearing", "test-bank", allow_negative=True)
        ledger.post(
            "topup",
            [ledger.Leg(clearing, -amount), ledger.Leg(ledger.wallet_of(citizen_id), amount)],
            actor=SYSTEM,
        )
        db.session.commit()


def wallet(app, citizen_id):
    with app.app_context():
        return ledger.balance(ledger.wallet_of(citizen_id))


def tap(client, gate, card, direction, stop, *, at=None, pin=False):  # noqa: F811
    tx = card.sign(gate.site, pin=pin, at=at)
    body = {**tx.to_json(), "direction": direction, "stop_id": stop}
    r = client.post(TAPS, headers=gate.headers, json=body)
    if r.status_code == 200:  # the lean route answers in the documented shape, unchanged
        assert TapResultSchema().dump(r.get_json()) == r.get_json()
    return tx, r


def test_ride_charges_the_distance_fare(app, client, gate, rider):  # noqa: F811
    _tx, r = tap(client, gate, rider, "in", A)
    assert r.status_code == 200 and r.get_json()["result"] == "accepted", r.get_json()
    _tx, r = tap(client, gate, rider, "out", B)
    body = r.get_json()
    assert body["result"] == "accepted", body
    assert (body["distance_m"], body["base_fen"], body["fare_fen"]) == (6000, 300, 300)
    assert body["discount_rate"] == "1" and body["balance_fen"] == 1700
    assert wallet(app, rider.citizen_id) == 1700
    with app.app_context():
        assert ledger.verify() == []


def test_repeated_tap_gets_the_first_answer_and_pays_once(app, client, gate, rider):  # noqa: F811
    tap(client, gate, rider, "in", A)
    tx, first = tap(client, gate, rider, "out", FAR_B)
    again = client.post(
        TAPS, headers=gate.headers, json={**tx.to_json(), "direction": "out", "stop_id": FAR_B}
    )
    assert again.status_code == 200
    assert again.get_json()["replayed"] is True
    assert {k: v for k, v in again.get_json().items() if k != "replayed"} == {
        k: v for k, v in first.get_json().items() if k != "replayed"
    }
    assert wallet(app, rider.citizen_id) == 2000 - first.get_json()["fare_fen"]


def test_tap_in_needs_the_minimum_fare(app, network, client, gate, register_citizen, issue):  # noqa: F811
    card = issue(register_citizen())
    _tx, r = tap(client, gate, card, "in", A, pin=True)
    body = r.get_json()
    assert body["result"] == "refused" and body["reason"] == "INSUFFICIENT_FUNDS"
    assert body["minimum_fen"] == 300 and body["reason_zh"] == "余额不足"


def test_exit_without_entry_online_is_refused(client, gate, rider):  # noqa: F811
    _tx, r = tap(client, gate, rider, "out", B)
    assert r.get_json()["result"] == "refused" and r.get_json()["reason"] == "NO_TAP_IN"


def test_suspended_card_refused_at_the_gate(client, gate, station, rider):  # noqa: F811
    client.post(f"/api/v1/cards/{rider.number}/report-lost", headers=station.headers, json={})
    _tx, r = tap(client, gate, rider, "in", A)
    assert r.status_code == 403 and r.get_json()["reason"] == "CARD_SUSPENDED"


def test_monthly_discount_applies_from_100_yuan(app, client, gate, rider):  # noqa: F811
    fund(app, rider.citizen_id, 20000)
    tap(client, gate, rider, "in", A)
    with app.app_context():
        from datetime import UTC
        from datetime import datetime

        from services.transit.taps import _month

        db.session.add(
            TransitMonthSpend(
                card_number=rider.number, month=_month(datetime.now(UTC)), spent_fen=10000
            )
        )
        db.session.commit()
    _tx, r = tap(client, gate, rider, "out", B)
    body = r.get_json()
    assert (body["base_fen"], body["discount_rate"], body["fare_fen"]) == (300, "0.8", 240)


def test_unknown_stop_is_404_and_spends_nothing(client, gate, rider):  # noqa: F811
    tx, r = tap(client, gate, rider, "in", "NOWHERE")
    assert r.status_code == 404 and r.get_json()["code"] == "UNKNOWN_STOP"
    r = client.post(
        TAPS, headers=gate.headers, json={**tx.to_json(), "direction": "in", "stop_id": A}
    )
    assert r.get_json()["result"] == "accepted"


def batch(client, gate, items):  # noqa: F811
    return client.post(f"{TAPS}:batch", headers=gate.headers, json={"taps": items})


def test_offline_exit_before_entry_is_paired(app, client, gate, rider):  # noqa: F811
    now = int(time.time())
    entry = rider.sign(gate.site, at=now - 7200)
    exit_ = rider.sign(gate.site, at=now - 3600)
    r = batch(client, gate, [{**exit_.to_json(), "direction": "out", "stop_id": B}])
    assert r.get_json()["results"][0]["result"] == "pending"
    assert wallet(app, rider.citizen_id) == 2000
    r = batch(client, gate, [{**entry.to_json(), "direction": "in", "stop_id": A}])
    paired = r.get_json()["results"][0]
    assert paired["result"] == "accepted" and paired["paired_exit"]["fare_fen"] == 300
    assert wallet(app, rider.citizen_id) == 1700


def test_batch_is_idempotent_and_ordered(app, client, gate, rider):  # noqa: F811
    now = int(time.time())
    entry = rider.sign(gate.site, at=now - 20000)  # 5.5 h inside: the 3 元 surcharge
    exit_ = rider.sign(gate.site, at=now - 200)
    items = [
        {**exit_.to_json(), "direction": "out", "stop_id": B},
        {**entry.to_json(), "direction": "in", "stop_id": A},
    ]
    first = batch(client, gate, items).get_json()
    assert [r["result"] for r in first["results"]] == ["accepted", "accepted"]
    assert first["results"][0]["surcharge_fen"] == 300 and first["results"][0]["fare_fen"] == 600
    again = batch(client, gate, items).get_json()
    assert all(r["replayed"] for r in again["results"])
    assert wallet(app, rider.citizen_id) == 1400


def test_close_day_charges_the_penalty_fare(app, client, gate, rider):  # noqa: F811
    tap(client, gate, rider, "in", FAR_A)
    with app.app_context():
        trip = db.session.scalars(
            select(TransitTrip).where(TransitTrip.card_number == rider.number)
        ).one()
        charged, due = close_day(trip.service_day, actor=SYSTEM)
        assert (charged, due) == (1, 0)
        trip = db.session.get(TransitTrip, trip.id)
        assert trip.status == "penalty" and trip.penalty_fen == trip.fare_fen > 0
    result = app.test_cli_runner().invoke(args=["transit", "close-day"])
    assert result.exit_code == 0, result.output


def test_unpaid_penalty_blocks_the_next_entry(app, network, client, gate, register_citizen, issue):  # noqa: F811
    citizen_id = register_citizen()
    card = issue(citizen_id)
    fund(app, citizen_id, 300)
    _tx, r = tap(client, gate, card, "in", FAR_A, pin=True)
    assert r.get_json()["result"] == "accepted"
    with app.app_context():
        trip = db.session.scalars(
            select(TransitTrip).where(TransitTrip.card_number == card.number)
        ).one()
        assert close_day(trip.service_day, actor=SYSTEM) == (0, 1)
    _tx, r = tap(client, gate, card, "in", A)
    assert r.get_json()["reason"] == "PENALTY_DUE"


def test_trips_for_resident_and_station(app, client, gate, station, rider):  # noqa: F811
    import base64

    tap(client, gate, rider, "in", A)
    tap(client, gate, rider, "out", B)
    r = client.get(
        "/api/v1/transit/trips",
        headers=station.headers,
        query_string={"citizen_id": rider.citizen_id},
    )
    assert r.status_code == 403  # a station client without transit:read
    challenge = client.post("/api/v1/card-auth/challenges", headers=gate.headers).get_json()
    rider.card.select()
    rider.card.verify_pin("246810")
    sig = rider.card.internal_authenticate(bytes.fromhex(challenge["challenge"]))
    token = client.post(
        "/api/v1/card-auth/sessions",
        headers=gate.headers,
        json={
            "card_number": rider.number,
            "challenge": challenge["challenge"],
            "signature": base64.b64encode(sig).decode(),
        },
    ).get_json()
    assert "wallet:read" in token["scope"]


def resident_token(client, gate, card):  # noqa: F811
    import base64

    challenge = client.post("/api/v1/card-auth/challenges", headers=gate.headers).get_json()
    card.card.select()
    card.card.verify_pin("246810")
    sig = card.card.internal_authenticate(bytes.fromhex(challenge["challenge"]))
    token = client.post(
        "/api/v1/card-auth/sessions",
        headers=gate.headers,
        json={
            "card_number": card.number,
            "challenge": challenge["challenge"],
            "signature": base64.b64encode(sig).decode(),
        },
    ).get_json()
    return {"Authorization": f"Bearer {token['access_token']}"}


def test_quote_with_the_cards_monthly_discount(app, client, gate, bearer, rider):  # noqa: F811
    tap(client, gate, rider, "in", A)
    tap(client, gate, rider, "out", B)
    with app.app_context():
        from datetime import UTC
        from datetime import datetime

        from services.transit.taps import _month

        row = db.session.get(TransitMonthSpend, (rider.number, _month(datetime.now(UTC))))
        row.spent_fen = 15000  # 150 元 this month: half price from now on
        db.session.commit()
    q = {"from": FAR_A, "to": FAR_B}
    plain = client.get("/api/v1/transit/fares", headers=gate.headers, query_string=q).get_json()
    assert plain["fare_fen"] == 700
    at_gate = client.get(
        "/api/v1/transit/fares", headers=gate.headers, query_string={**q, "card": rider.number}
    ).get_json()
    assert at_gate["fare_fen"] == 350
    assert at_gate["discount"]["spent_fen"] == 15000 and at_gate["discount"]["rate"] == "0.50"
    partner = bearer("transit:read")
    r = client.get(
        "/api/v1/transit/fares", headers=partner, query_string={**q, "card": rider.number}
    )
    assert r.status_code == 403
    # A resident's own token: their card's discount without naming it, and no one else's.
    mine = resident_token(client, gate, rider)
    assert (
        client.get("/api/v1/transit/fares", headers=mine, query_string=q).get_json()["fare_fen"]
        == 350
    )
    r = client.get(
        "/api/v1/transit/fares", headers=mine, query_string={**q, "card": "6210000000000000001"}
    )
    assert r.status_code == 404


BUS_A, BUS_B = "B-LAOSHAN", "B-NANLISHILU"  # 10,000 m along bus 1: 2 元 before discounts


def test_bus_ride_at_the_card_rate(app, client, gate, rider):  # noqa: F811
    tap(client, gate, rider, "in", BUS_A)
    _tx, r = tap(client, gate, rider, "out", BUS_B)
    body = r.get_json()
    assert (body["distance_m"], body["base_fen"], body["fare_fen"]) == (10000, 200, 100)
    assert wallet(app, rider.citizen_id) == 1900


@pytest.mark.parametrize(
    ("group", "days", "fare"),
    [("student", 30, 50), ("senior", 30, 0), ("student", -1, 100)],
)
def test_bus_concessions_recorded_at_a_station(app, client, gate, bearer, rider, group, days, fare):  # noqa: F811
    from datetime import date
    from datetime import timedelta

    manager = bearer("transit:manage", kind="station")
    r = client.put(
        f"/api/v1/transit/concessions/{rider.citizen_id}",
        headers=manager,
        json={"group": group, "valid_until": (date.today() + timedelta(days=days)).isoformat()},
    )
    assert r.status_code == 200, r.get_json()
    tap(client, gate, rider, "in", BUS_A)
    _tx, r = tap(client, gate, rider, "out", BUS_B)
    assert r.get_json()["fare_fen"] == fare  # an expired concession falls back to the card rate
    assert wallet(app, rider.citizen_id) == 2000 - fare


def test_unknown_concession_group_refused(client, bearer, rider):  # noqa: F811
    manager = bearer("transit:manage", kind="station")
    r = client.put(
        f"/api/v1/transit/concessions/{rider.citizen_id}",
        headers=manager,
        json={"group": "pirate", "valid_until": "2030-01-01"},
    )
    assert r.status_code == 422 and r.get_json()["code"] == "UNKNOWN_CONCESSION"
    partner = bearer("transit:manage")
    r = client.put(
        f"/api/v1/transit/concessions/{rider.citizen_id}",
        headers=partner,
        json={"group": "student", "valid_until": "2030-01-01"},
    )
    assert r.status_code == 403
