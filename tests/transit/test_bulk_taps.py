# ruff: noqa: F811  (pytest fixtures imported from the card tests)
"""The bulk form of taps (services/transit/ingest.py): same answers and books as tap by tap.

Most taps are decided in memory from one read and written together; the unusual ones go
the careful way. These tests pin down which way a tap goes and that both agree.
"""

from __future__ import annotations

import time
from datetime import UTC
from datetime import datetime
from datetime import timedelta

from sqlalchemy import func
from sqlalchemy import select

from citizen_card.audit.models import AuditEvent
from citizen_card.cards.models import Card
from citizen_card.cards.models import CardTransaction
from citizen_card.extensions import db
from services.transit.fares import active_rules
from services.transit.fares import rail_fare
from services.transit.ingest import TapItem
from services.transit.ingest import ingest
from services.transit.schemas import BatchResultSchema
from services.transit.taps import TransitMonthSpend
from services.transit.taps import TransitTap
from services.transit.taps import TransitTrip
from services.transit.taps import _month
from services.transit.taps import tap as careful_tap
from tests.cards.conftest import gate  # noqa: F401  (fixtures shared with the card tests)
from tests.cards.conftest import issue  # noqa: F401
from tests.cards.conftest import register_citizen  # noqa: F401
from tests.cards.conftest import station  # noqa: F401
from tests.transit.test_taps import SYSTEM
from tests.transit.test_taps import active_rider
from tests.transit.test_taps import batch
from tests.transit.test_taps import fund
from tests.transit.test_taps import wallet

A, B = "L1-TIANANMENXI", "L1-GUOMAO"  # 6,000 m: 3 元
FAR_A, FAR_B = "L1-PINGGUOYUAN", "L10-FENZHONGSI"  # 32,100 m: 7 元


def _item(card, gate, direction, stop, at):  # noqa: F811
    return {**card.sign(gate.site, at=at).to_json(), "direction": direction, "stop_id": stop}


def test_an_upload_of_several_riders_is_decided_in_bulk(
    app,
    network,
    client,
    gate,
    station,
    register_citizen,
    issue,  # noqa: F811
):
    rich = active_rider(app, client, gate, register_citizen, issue, 5000)
    poor = active_rider(app, client, gate, register_citizen, issue, 500)  # one 3 元 ride
    lost = active_rider(app, client, gate, register_citizen, issue, 5000)
    client.post(f"/api/v1/cards/{lost.number}/report-lost", headers=station.headers, json={})
    t = int(time.time()) - 10_000
    dup = _item(rich, gate, "in", FAR_A, t + 2000)
    items = [
        _item(rich, gate, "in", A, t),
        _item(rich, gate, "out", B, t + 600),  # 3 元
        dup,
        _item(rich, gate, "out", FAR_B, t + 4000),  # 7 元
        dup,  # the same tap twice in one upload: one answer, paid once
        _item(poor, gate, "in", A, t + 10),
        _item(poor, gate, "out", B, t + 700),  # 3 元: 2 元 left
        _item(poor, gate, "in", A, t + 800),  # 2 元 < the 3 元 minimum
        _item(lost, gate, "in", A, t + 20),  # a lost card: refused by the card rules
        _item(rich, gate, "in", "NOWHERE", t + 5000),  # unknown stop: an error of its own
    ]
    body = batch(client, gate, items).get_json()
    assert BatchResultSchema().dump(body) == body  # the answer is the documented shape
    results = body["results"]
    assert [r["result"] for r in results] == [
        "accepted",
        "accepted",
        "accepted",
        "accepted",
        "accepted",
        "accepted",
        "accepted",
        "refused",
        "refused",
        "error",
    ]
    assert results[1]["fare_fen"] == 300 and results[3]["fare_fen"] == 700
    assert results[4] == {**results[2], "index": 4, "replayed": True}
    assert results[7]["reason"] == "INSUFFICIENT_FUNDS" and results[7]["balance_fen"] == 200
    assert results[8]["reason"] == "CARD_SUSPENDED"
    assert results[9]["code"] == "UNKNOWN_STOP"
    assert (body["accepted"], body["refused"]) == (7, 2)
    assert wallet(app, rich.citizen_id) == 4000
    assert wallet(app, poor.citizen_id) == 200
    assert wallet(app, lost.citizen_id) == 5000
    with app.app_context():
        # Every decided tap spent its counter once and left one audit record, as tap by tap.
        for card, taps in ((rich, 4), (poor, 3)):
            spent = db.session.scalar(
                select(func.count())
                .select_from(CardTransaction)
                .join(Card, Card.id == CardTransaction.card_id)
                .where(
                    Card.card_number == card.number,
                    CardTransaction.atc.in_(
                        [i["atc"] for i in items if i["card_number"] == card.number]
                    ),
                )
            )
            assert spent == taps
            audited = db.session.scalar(
                select(func.count()).where(
                    AuditEvent.subject == f"card:{card.number}",
                    AuditEvent.action.in_(("transit.tap_in", "transit.tap_out")),
                )
            )
            assert audited == taps
        trips = db.session.scalars(
            select(TransitTrip).where(TransitTrip.citizen_id == rich.citizen_id)
        ).all()
        assert sorted((t.status, t.fare_fen) for t in trips) == [("closed", 300), ("closed", 700)]
        assert all(t.ledger_entry_id for t in trips)
        month = db.session.get(TransitMonthSpend, (rich.number, _month(datetime.now(UTC))))
        assert month is not None and month.spent_fen == 1000
    again = batch(client, gate, items).get_json()["results"]
    assert all(r["replayed"] for r in again[:8])
    assert wallet(app, rich.citizen_id) == 4000


def test_common_taps_go_in_bulk_and_unusual_ones_carefully(
    app_ctx, network, client, gate, register_citizen, issue
):  # noqa: F811, E501
    app = app_ctx
    plain = active_rider(app, client, gate, register_citizen, issue, 5000)
    fresh_id = register_citizen()
    fresh = issue(fresh_id)  # never tapped: its first tap activates it
    fund(app, fresh_id, 5000)
    t = int(time.time()) - 5000
    txs = [
        (plain.sign(gate.site, at=t), "in", A),
        (plain.sign(gate.site, at=t + 600), "out", B),
        (fresh.sign(gate.site, pin=True, at=t + 5), "in", A),
        (plain.sign(gate.site, at=t + 900), "in", "NOWHERE"),
    ]
    items = [TapItem(i, tx, d, s) for i, (tx, d, s) in enumerate(txs)]
    done, careful = ingest(items, actor=SYSTEM, terminal=gate.site, offline=True)
    assert sorted(done) == [0, 1]
    assert [i.index for i in careful] == [2, 3]
    for item in careful[:1]:
        assert careful_tap(
            item.tx,
            direction=item.direction,
            stop_id=item.stop_id,
            actor=SYSTEM,
            terminal=gate.site,
            offline=True,
        ).accepted
    db.session.commit()


def test_a_month_of_rides_in_one_upload_crosses_the_discount_tiers(
    app,
    network,
    client,
    gate,
    register_citizen,
    issue,  # noqa: F811
):
    card = active_rider(app, client, gate, register_citizen, issue, 100_000)
    with app.app_context():
        rules = active_rules()
    # Hourly rides from the 2nd of last month (Beijing): all in one month, whatever today is.
    from services.transit.fares import beijing_zone

    today = datetime.now(beijing_zone())
    last_month = (today.replace(day=1) - timedelta(days=1)).replace(day=2, hour=6, minute=0)
    start = int(last_month.timestamp())
    items, expected, spent = [], [], 0
    for k in range(70):  # 70 rides of 7 元 base: crosses 100 元 and 150 元
        at = start + k * 3600
        items.append(_item(card, gate, "in", FAR_A, at))
        items.append(_item(card, gate, "out", FAR_B, at + 1800))
        fare = rail_fare(
            32_100, rules=rules, at=datetime.fromtimestamp(at + 1800, UTC), month_spent_fen=spent
        )
        expected.append(fare.total_fen)
        spent += fare.counts_toward_month_fen
    results = batch(client, gate, items).get_json()["results"]
    assert [r["fare_fen"] for r in results[1::2]] == expected
    rates = [r["discount_rate"] for r in results[1::2]]
    assert rates[0] == "1" and "0.8" in rates and rates[-1] == "0.5"
    assert wallet(app, card.citizen_id) == 100_000 - sum(expected)


def test_bulk_and_careful_paths_agree(app_ctx, network, client, gate, register_citizen, issue):  # noqa: F811
    """The same rides, one card through the bulk path and one tap by tap: same answers."""
    app = app_ctx
    one = active_rider(app, client, gate, register_citizen, issue, 2000)
    two = active_rider(app, client, gate, register_citizen, issue, 2000)
    t = int(time.time()) - 40_000
    plan = [("in", A, 0), ("out", B, 600), ("in", FAR_A, 1000), ("out", FAR_B, 20_000),
            ("in", A, 21_000), ("out", A, 21_100), ("out", B, 22_000), ("in", B, 23_000),
            ("out", FAR_B, 24_000)]  # fmt: skip
    bulk_items = [
        TapItem(i, one.sign(gate.site, at=t + dt), d, s) for i, (d, s, dt) in enumerate(plan)
    ]
    done, careful = ingest(bulk_items, actor=SYSTEM, terminal=gate.site, offline=True)
    db.session.commit()
    assert careful == [] and len(done) == len(plan)
    slow = []
    for d, s, dt in plan:
        slow.append(careful_tap(two.sign(gate.site, at=t + dt), direction=d, stop_id=s,
                                actor=SYSTEM, terminal=gate.site, offline=True))  # fmt: skip
        db.session.commit()

    def comparable(body):
        return {k: v for k, v in body.items() if k != "trip_id"}

    assert [comparable(done[i].body) for i in range(len(plan))] == [
        comparable(o.body) for o in slow
    ]
    assert wallet(app, one.citizen_id) == wallet(app, two.citizen_id)
    stored = db.session.scalars(
        select(TransitTap.outcome)
        .where(TransitTap.card_number == one.number)
        .order_by(TransitTap.id)
    ).all()
    assert stored == [o.body["result"] for o in slow]
