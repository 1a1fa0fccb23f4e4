"""Fares from the shipped Beijing rules: tiers, monthly discount, time limit, buses, rounding.

Also the rules file's validation, its per-process cache, and the quote endpoint.
"""

from __future__ import annotations

import os
import time
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from services.transit.fares import BEIJING
from services.transit.fares import Concession
from services.transit.fares import FareRules
from services.transit.fares import FareRulesError
from services.transit.fares import NoRuleSetInForce
from services.transit.fares import RailRide
from services.transit.fares import apply_rate
from services.transit.fares import beijing_date
from services.transit.fares import beijing_month
from services.transit.fares import beijing_zone
from services.transit.fares import bus_fare
from services.transit.fares import discount_progress
from services.transit.fares import flat_fare
from services.transit.fares import load_rules
from services.transit.fares import month_window
from services.transit.fares import parse_rules
from services.transit.fares import price_rail_rides
from services.transit.fares import rail_fare
from services.transit.fares import rules_from_file
from tests.transit.conftest import NOW
from tests.transit.conftest import rules_document
from tests.transit.conftest import write_rules


def bj(*args: int) -> datetime:
    """A Beijing wall-clock time as an aware datetime."""
    return datetime(*args, tzinfo=BEIJING)  # type: ignore[misc]


# --- rail tiers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("distance_m", "fen"),
    [
        (0, 300),
        (1, 300),
        (6000, 300),  # exactly 6 km: still the first tier
        (6001, 400),
        (6010, 400),  # 6.01 km
        (12000, 400),
        (12001, 500),
        (22000, 500),
        (22001, 600),
        (32000, 600),
        (32001, 700),  # beyond 32 km: +1 yuan per 20 km *or part thereof*
        (32100, 700),  # 32.1 km
        (52000, 700),  # 32 + 20 km: still one step
        (52001, 800),
        (52100, 800),  # 52.1 km
        (72000, 800),
        (72001, 900),
    ],
)
def test_rail_tiers(rules: FareRules, distance_m: int, fen: int) -> None:
    fare = rail_fare(distance_m, rules=rules, at=NOW)
    assert (fare.base_fen, fare.total_fen, fare.discount_fen) == (fen, fen, 0)
    assert fare.discount_rate == Decimal(1)
    assert fare.rule_set == "beijing-2014-12-28"
    assert fare.counts_toward_month_fen == fen


def test_rule_set_is_chosen_by_the_beijing_date(rules: FareRules) -> None:
    # The distance fares started on 2014-12-28, Beijing time: 16:00 UTC the day before.
    before = datetime(2014, 12, 27, 15, 59, 59, tzinfo=UTC)
    after = datetime(2014, 12, 27, 16, 0, tzinfo=UTC)
    old = rail_fare(30000, rules=rules, at=before)
    new = rail_fare(30000, rules=rules, at=after)
    assert (old.total_fen, old.rule_set) == (200, "beijing-2007-10-07")  # 2 yuan, any distance
    assert (new.total_fen, new.rule_set) == (600, "beijing-2014-12-28")


def test_no_rule_set_before_the_first(rules: FareRules) -> None:
    with pytest.raises(NoRuleSetInForce) as caught:
        rail_fare(1000, rules=rules, at=bj(2007, 10, 6, 23, 59))
    assert caught.value.extensions == {"date": "2007-10-06"}


def test_naive_times_are_refused(rules: FareRules) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        rail_fare(1000, rules=rules, at=datetime(2026, 3, 1, 12, 0))


def test_negative_or_fractional_distances_are_refused(rules: FareRules) -> None:
    with pytest.raises(ValueError, match="non-negative integer"):
        rail_fare(-1, rules=rules, at=NOW)
    with pytest.raises(ValueError, match="non-negative integer"):
        bus_fare(1.5, rules=rules, at=NOW)  # type: ignore[arg-type]


# --- the monthly volume discount --------------------------------------------------------------


@pytest.mark.parametrize(
    ("spent_fen", "rate", "total_fen"),
    [
        (0, "1", 600),
        (9999, "1", 600),
        (10000, "0.80", 480),  # reaching 100 yuan *before* the ride: 80%
        (14999, "0.80", 480),
        (15000, "0.50", 300),
        (39999, "0.50", 300),
        (40000, "1.00", 600),  # from 400 yuan on: full fare again
        (90000, "1.00", 600),
    ],
)
def test_monthly_rate_follows_spend_before_the_ride(
    rules: FareRules, spent_fen: int, rate: str, total_fen: int
) -> None:
    fare = rail_fare(30000, rules=rules, at=NOW, month_spent_fen=spent_fen)
    assert fare.discount_rate == Decimal(rate)
    assert fare.total_fen == total_fen
    assert fare.discount_fen == 600 - total_fen
    assert fare.counts_toward_month_fen == total_fen  # what was paid, not the list price


def test_a_month_of_rides_crosses_100_150_and_400_yuan(rules: FareRules) -> None:
    # Four 30 km rides (6 yuan) a day through March 2026, Beijing time.
    rides = [
        RailRide(at=bj(2026, 3, day, hour), distance_m=30000)
        for day in range(1, 32)
        for hour in (8, 12, 18, 22)
    ]
    totals = [f.total_fen for f in price_rail_rides(rides, rules=rules)]
    # Rides 1-17 at full fare: before ride 17 the month stands at 96 yuan, after it 102.
    assert totals[:17] == [600] * 17
    # From 102 yuan: 80% (4.80) for ten rides, reaching exactly 150 yuan after ride 27.
    assert totals[17:27] == [480] * 10
    # Exactly 150 yuan before ride 28: 50%. 84 rides at 3 yuan reach 402 yuan after ride 111.
    assert totals[27:111] == [300] * 84
    # 402 yuan before ride 112: full fare again until the month ends.
    assert totals[111:] == [600] * 13
    # April 1st, 00:00 Beijing: a new month, full fare (the previous spend is forgotten).
    april = price_rail_rides(
        [*rides, RailRide(at=bj(2026, 4, 1, 0, 0), distance_m=30000)], rules=rules
    )
    assert april[-1].total_fen == 600 and april[-2].total_fen == 600


def test_the_month_resets_at_beijing_midnight_not_utc(rules: FareRules) -> None:
    december = [RailRide(at=bj(2026, 12, d, 9), distance_m=30000) for d in range(1, 18)]
    late = RailRide(at=datetime(2026, 12, 31, 15, 59, tzinfo=UTC), distance_m=30000)
    # 16:30 UTC on 31 December is 00:30 on 1 January in Beijing.
    new_year = RailRide(at=datetime(2026, 12, 31, 16, 30, tzinfo=UTC), distance_m=30000)
    priced = price_rail_rides([*december, late, new_year], rules=rules)
    assert priced[-2].total_fen == 480  # still December: 102 yuan spent before it
    assert priced[-1].total_fen == 600  # January: nothing spent yet
    assert beijing_month(new_year.at) == (2027, 1)
    assert beijing_month(late.at) == (2026, 12)
    assert month_window(new_year.at) == (
        datetime(2026, 12, 31, 16, 0, tzinfo=UTC),
        datetime(2027, 1, 31, 16, 0, tzinfo=UTC),
    )
    assert month_window(late.at) == (
        datetime(2026, 11, 30, 16, 0, tzinfo=UTC),
        datetime(2026, 12, 31, 16, 0, tzinfo=UTC),
    )


def test_airport_express_neither_discounted_nor_counted(rules: FareRules) -> None:
    at = bj(2026, 3, 20, 9)
    fare = flat_fare("AE", rules=rules, at=at, distance_m=21344)
    assert (fare.kind, fare.total_fen, fare.counts_toward_month_fen) == ("flat", 2500, 0)
    # No discount even with 200 yuan spent on rail this month.
    assert flat_fare("AE", rules=rules, at=at).total_fen == 2500
    # 97 yuan of rail, then the Airport Express, then rail: still below 100 yuan, full fare.
    rides = [
        RailRide(at=bj(2026, 3, 1 + i // 4, 8 + i % 4), distance_m=30000) for i in range(16)
    ]  # 96 yuan
    rides.append(RailRide(at=bj(2026, 3, 10, 8), distance_m=1000))  # 3 yuan: 99 yuan
    rides.append(RailRide(at=bj(2026, 3, 10, 9), distance_m=21344, flat_route_id="AE"))
    rides.append(RailRide(at=bj(2026, 3, 10, 12), distance_m=30000))
    priced = price_rail_rides(rides, rules=rules)
    assert [p.total_fen for p in priced[-3:]] == [300, 2500, 600]


def test_flat_fare_needs_a_rule(rules: FareRules) -> None:
    with pytest.raises(FareRulesError, match="no flat fare for route 'L1'"):
        flat_fare("L1", rules=rules, at=NOW)


# --- the 4-hour limit -------------------------------------------------------------------------


def test_four_hours_inside_is_allowed(rules: FareRules) -> None:
    out = bj(2026, 3, 2, 12, 0)
    fare = rail_fare(5000, rules=rules, at=out, entered_at=out - timedelta(hours=4))
    assert (fare.surcharge_fen, fare.total_fen) == (0, 300)


def test_longer_than_four_hours_adds_3_yuan_undiscounted_and_uncounted(rules: FareRules) -> None:
    out = bj(2026, 3, 2, 12, 0)
    entered = out - timedelta(hours=4, seconds=1)
    fare = rail_fare(5000, rules=rules, at=out, entered_at=entered, month_spent_fen=15000)
    assert (fare.base_fen, fare.discount_fen, fare.surcharge_fen) == (300, 150, 300)
    assert fare.total_fen == 450
    assert fare.counts_toward_month_fen == 150
    assert flat_fare("AE", rules=rules, at=out, entered_at=entered).total_fen == 2800


def test_entry_time_must_be_aware(rules: FareRules) -> None:
    with pytest.raises(ValueError, match="entered_at must be timezone-aware"):
        rail_fare(5000, rules=rules, at=NOW, entered_at=datetime(2026, 3, 2, 8, 0))


# --- buses ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("distance_m", "cash_fen", "card_fen", "student_fen"),
    [
        (1, 200, 100, 50),
        (10000, 200, 100, 50),  # exactly 10 km
        (10001, 300, 150, 75),  # +1 yuan per 5 km or part thereof
        (15000, 300, 150, 75),
        (15001, 400, 200, 100),
        (21600, 500, 250, 125),
    ],
)
def test_bus_fares(
    rules: FareRules, distance_m: int, cash_fen: int, card_fen: int, student_fen: int
) -> None:
    student = Concession("student", valid_until=date(2027, 7, 31))
    assert bus_fare(distance_m, rules=rules, at=NOW, paid_with_card=False).total_fen == cash_fen
    card = bus_fare(distance_m, rules=rules, at=NOW)
    assert (card.base_fen, card.discount_rate, card.total_fen) == (
        cash_fen,
        Decimal("0.50"),
        card_fen,
    )
    fare = bus_fare(distance_m, rules=rules, at=NOW, concession=student)
    assert (fare.total_fen, fare.concession, fare.discount_rate) == (
        student_fen,
        "student",
        Decimal("0.25"),
    )


@pytest.mark.parametrize("group", ["senior", "disabled"])
def test_seniors_and_disabled_ride_buses_free(rules: FareRules, group: str) -> None:
    fare = bus_fare(25000, rules=rules, at=NOW, concession=Concession(group, date(2030, 1, 1)))
    assert (fare.base_fen, fare.discount_fen, fare.total_fen) == (500, 500, 0)


def test_a_concession_expires_at_the_end_of_its_beijing_day(rules: FareRules) -> None:
    student = Concession("student", valid_until=date(2027, 7, 31))
    last_day = datetime(2027, 7, 31, 15, 59, tzinfo=UTC)  # 23:59 Beijing
    next_day = datetime(2027, 7, 31, 16, 0, tzinfo=UTC)  # 00:00 on 1 August in Beijing
    assert bus_fare(5000, rules=rules, at=last_day, concession=student).total_fen == 50
    expired = bus_fare(5000, rules=rules, at=next_day, concession=student)
    assert (expired.total_fen, expired.concession) == (100, None)  # the ordinary card rate


def test_concessions_need_a_card_and_a_known_group(rules: FareRules) -> None:
    student = Concession("student", valid_until=date(2030, 1, 1))
    cash = bus_fare(5000, rules=rules, at=NOW, concession=student, paid_with_card=False)
    assert (cash.total_fen, cash.concession) == (200, None)
    veteran = bus_fare(
        5000, rules=rules, at=NOW, concession=Concession("veteran", date(2030, 1, 1))
    )
    assert (veteran.total_fen, veteran.concession) == (100, None)


def test_bus_fares_under_the_2007_rules(rules: FareRules) -> None:
    at = bj(2010, 5, 1, 9)
    assert bus_fare(12000, rules=rules, at=at).total_fen == 40  # 1 yuan at 40%
    assert bus_fare(12001, rules=rules, at=at).total_fen == 60  # 1.50 yuan at 40%
    student = Concession("student", valid_until=date(2011, 1, 1))
    assert bus_fare(12000, rules=rules, at=at, concession=student).total_fen == 20
    # No senior concession yet in that rule set: the ordinary card rate.
    senior = bus_fare(12000, rules=rules, at=at, concession=Concession("senior", date(2030, 1, 1)))
    assert (senior.total_fen, senior.concession) == (40, None)


# --- rounding ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "rate", "expected"),
    [
        (5, "0.5", 3),  # 2.5 fen rounds half up
        (3, "0.5", 2),
        (1, "0.25", 0),  # 0.25 fen rounds down
        (3, "0.25", 1),  # 0.75 rounds up
        (305, "0.8", 244),
        (2, "0.25", 1),  # 0.5 rounds up
        (0, "0.5", 0),
    ],
)
def test_apply_rate_rounds_half_up(amount: int, rate: str, expected: int) -> None:
    assert apply_rate(amount, Decimal(rate)) == expected


def test_rail_and_bus_round_half_up_with_odd_amounts(tmp_path: Path) -> None:
    data = rules_document()
    current = data["rule_sets"][1]
    current["rail"]["tiers"][0]["fare_fen"] = 305
    current["bus"]["tiers"][0]["fare_fen"] = 205
    current["bus"]["concessions"]["student"] = "0.333"
    rules = load_rules(write_rules(tmp_path, data))
    rail = rail_fare(1000, rules=rules, at=NOW, month_spent_fen=15000)
    assert (rail.base_fen, rail.total_fen, rail.discount_fen) == (305, 153, 152)  # 152.5 -> 153
    assert rail_fare(1000, rules=rules, at=NOW, month_spent_fen=10000).total_fen == 244
    assert bus_fare(1000, rules=rules, at=NOW).total_fen == 103  # 102.5 -> 103
    student = Concession("student", valid_until=date(2030, 1, 1))
    assert bus_fare(1000, rules=rules, at=NOW, concession=student).total_fen == 68  # 68.265


@settings(max_examples=200, deadline=None)
@given(
    distance=st.integers(min_value=0, max_value=200_000),
    spent=st.integers(min_value=0, max_value=60_000),
    minutes=st.integers(min_value=0, max_value=600),
)
def test_breakdowns_add_up(rules: FareRules, distance: int, spent: int, minutes: int) -> None:
    fare = rail_fare(
        distance,
        rules=rules,
        at=NOW,
        month_spent_fen=spent,
        entered_at=NOW - timedelta(minutes=minutes),
    )
    assert all(isinstance(v, int) for v in (fare.base_fen, fare.discount_fen, fare.total_fen))
    assert fare.total_fen == fare.base_fen - fare.discount_fen + fare.surcharge_fen
    assert 0 <= fare.discount_fen <= fare.base_fen
    assert rail_fare(distance + 1, rules=rules, at=NOW).base_fen >= fare.base_fen


# --- discount progress ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spent", "rate", "next_threshold", "next_rate", "remaining"),
    [
        (0, "1", 10000, "0.80", 10000),
        (9950, "1", 10000, "0.80", 50),
        (10000, "0.80", 15000, "0.50", 5000),
        (12000, "0.80", 15000, "0.50", 3000),
        (15000, "0.50", 40000, "1.00", 25000),
        (40000, "1.00", None, None, None),
    ],
)
def test_discount_progress(
    rules: FareRules,
    spent: int,
    rate: str,
    next_threshold: int | None,
    next_rate: str | None,
    remaining: int | None,
) -> None:
    progress = discount_progress(spent, rules=rules, at=NOW)
    assert progress.rate == Decimal(rate)
    assert progress.next_threshold_fen == next_threshold
    assert progress.next_rate == (Decimal(next_rate) if next_rate else None)
    assert progress.remaining_fen == remaining


def test_discount_progress_without_a_discount_scheme(rules: FareRules) -> None:
    progress = discount_progress(5000, rules=rules, at=bj(2010, 1, 1, 9))
    assert (progress.rate, progress.next_threshold_fen, progress.rule_set) == (
        Decimal(1),
        None,
        "beijing-2007-10-07",
    )


# --- Beijing time -----------------------------------------------------------------------------


def test_beijing_time_falls_back_to_a_fixed_utc_plus_8() -> None:
    # What a system without the tz database gets: the same wall clock (China has no DST).
    fixed = beijing_zone("No/Such_Zone")
    assert fixed.utcoffset(None) == timedelta(hours=8)
    moment = datetime(2026, 7, 1, 16, 30, tzinfo=UTC)
    assert moment.astimezone(fixed).replace(tzinfo=None) == moment.astimezone(BEIJING).replace(
        tzinfo=None
    )
    assert beijing_date(moment) == date(2026, 7, 2)


# --- the rules file ---------------------------------------------------------------------------


def test_shipped_rules_load(rules: FareRules) -> None:
    assert [r.name for r in rules.rule_sets] == ["beijing-2007-10-07", "beijing-2014-12-28"]
    current = rules.in_force(NOW)
    assert current.rail.flat_fare_routes["AE"].fare_fen == 2500
    assert current.bus.concessions == {
        "student": Decimal("0.25"),
        "senior": Decimal(0),
        "disabled": Decimal(0),
    }


def _set(path: str, value: Any) -> Any:
    """A change to the current rule set at a dotted path (None value deletes)."""

    def change(data: dict[str, Any]) -> None:
        target: Any = data["rule_sets"][1]
        keys = path.split(".")
        for key in keys[:-1]:
            target = target[int(key)] if key.isdigit() else target[key]
        last = keys[-1]
        if value is _DELETE:
            del target[last]
        elif last.isdigit():
            target[int(last)] = value
        else:
            target[last] = value

    return change


_DELETE = object()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            _set("rail.tiers.1.up_to_m", 5000),
            "rule_sets[1].rail.tiers[1].up_to_m: must be greater than 6000",
        ),
        (
            _set("rail.tiers.0.fare_fen", 3.5),
            "rule_sets[1].rail.tiers[0].fare_fen: must be an integer",
        ),
        (
            _set("rail.tiers.0.fare_fen", True),
            "rule_sets[1].rail.tiers[0].fare_fen: must be an integer",
        ),
        (
            _set("rail.tiers.2.fare_fen", 350),
            "rule_sets[1].rail.tiers[2].fare_fen: a longer distance",
        ),
        (_set("rail.beyond", _DELETE), "rule_sets[1].rail.beyond: is required"),
        (_set("rail.tiers.0.up_to_m", None), "only the last tier may be unbounded"),
        (_set("rail.monthly_discounts.0.rate", "1.2"), "must be a decimal from 0 to 1"),
        (_set("rail.monthly_discounts.0.rate", "eighty"), "must be a decimal from 0 to 1"),
        (_set("rail.monthly_discounts.0.rate", True), 'must be a decimal such as "0.80"'),
        (_set("rail.monthly_discounts.1.spent_from_fen", 9000), "must be greater than 10000"),
        (_set("rail.flat_fare_routes.AE.counts_toward_month", "no"), "must be true or false"),
        (_set("rail.max_minutes_inside", 0), "max_minutes_inside: must be at least 1"),
        (_set("rail.surcharge_fen", 300), "rule_sets[1].rail: unknown key(s) surcharge_fen"),
        (_set("bus.card_rate", _DELETE), "rule_sets[1].bus: missing key(s) card_rate"),
        (_set("bus.concessions.student", -1), "concessions.student: must be a decimal from 0 to 1"),
        (_set("effective_from", "2014-13-01"), "effective_from: must be a date YYYY-MM-DD"),
        (_set("effective_from", "2007-10-07"), "is also the start of 'beijing-2007-10-07'"),
        (_set("name", "beijing-2007-10-07"), "duplicate name"),
    ],
)
def test_bad_rules_are_refused_with_where(tmp_path: Path, change: Any, message: str) -> None:
    data = rules_document()
    change(data)
    path = write_rules(tmp_path, data)
    with pytest.raises(FareRulesError) as caught:
        load_rules(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def test_bad_rules_files(tmp_path: Path) -> None:
    with pytest.raises(FareRulesError, match="cannot read"):
        load_rules(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"rule_sets": [\n  {"name": }\n]}', encoding="utf-8")
    with pytest.raises(FareRulesError, match="line 2 column 12: invalid JSON"):
        load_rules(broken)
    with pytest.raises(FareRulesError, match="rule_sets: must be a non-empty list"):
        parse_rules({"rule_sets": []})
    with pytest.raises(FareRulesError, match="format: must be"):
        parse_rules({"format": "other/2", "rule_sets": []})


def test_rules_are_cached_until_the_file_changes(tmp_path: Path, monkeypatch: Any) -> None:
    from services.transit import fares

    monkeypatch.setattr(fares, "RULES_CHECK_SECONDS", 0.2)
    path = write_rules(tmp_path, rules_document())
    first = rules_from_file(path)
    assert rules_from_file(path) is first
    data = rules_document()
    data["rule_sets"][1]["rail"]["tiers"][0]["fare_fen"] = 350
    write_rules(tmp_path, data)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    # Looked at again only once the check interval has passed.
    assert rules_from_file(path) is first
    time.sleep(0.25)
    second = rules_from_file(path)
    assert second is not first
    assert rail_fare(1000, rules=second, at=NOW).total_fen == 350


# --- the quote endpoint -----------------------------------------------------------------------

URL = "/api/v1/transit/fares"


def test_quote_needs_a_token(client: Any) -> None:
    r = client.get(URL, query_string={"from": "L1-XIDAN", "to": "L1-GUOMAO"})
    assert r.status_code == 401
    assert r.mimetype == "application/problem+json"
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_quote_needs_the_read_scope(client: Any, bearer: Any) -> None:
    r = client.get(
        URL, query_string={"from": "L1-XIDAN", "to": "L1-GUOMAO"}, headers=bearer("transit:tap")
    )
    assert r.status_code == 403
    assert r.get_json()["required_scopes"] == ["transit:read"]


def test_quote_rail_fare(client: Any, bearer: Any, network: Any) -> None:
    r = client.get(
        URL,
        query_string={"from": "L1-TIANANMENXI", "to": "L1-GUOMAO"},
        headers=bearer("transit:read"),
    )
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert (body["distance_m"], body["fare_fen"], body["kind"]) == (6000, 300, "rail")
    assert (body["from_name"], body["to_name"]) == ("天安门西", "国贸")
    assert body["path"][0] == "L1-TIANANMENXI" and body["path"][-1] == "L1-GUOMAO"
    assert body["breakdown"] == {
        "kind": "rail",
        "distance_m": 6000,
        "base_fen": 300,
        "discount_rate": "1",
        "discount_fen": 0,
        "surcharge_fen": 0,
        "penalty_fen": 0,
        "total_fen": 300,
        "rule_set": "beijing-2014-12-28",
        "counts_toward_month_fen": 300,
        "route_id": None,
        "concession": None,
    }
    assert body["discount"]["next_threshold_fen"] == 10000


def test_quote_across_a_transfer_and_at_a_past_date(client: Any, bearer: Any, network: Any) -> None:
    headers = bearer("transit:read")
    query = {"from": "L1-PINGGUOYUAN", "to": "L10-FENZHONGSI"}
    now = client.get(URL, query_string=query, headers=headers).get_json()
    assert (now["distance_m"], now["fare_fen"]) == (32100, 700)
    assert "L1-GUOMAO" in now["path"] and "L10-GUOMAO" in now["path"]
    then = client.get(
        URL, query_string={**query, "at": "2014-12-27T23:59:00+08:00"}, headers=headers
    ).get_json()
    assert (then["fare_fen"], then["breakdown"]["rule_set"]) == (200, "beijing-2007-10-07")


def test_quote_flat_line_and_bus(client: Any, bearer: Any, network: Any) -> None:
    headers = bearer("transit:read")
    ae = client.get(URL, query_string={"from": "BJ-DONGZHIMEN", "to": "AE-T3"}, headers=headers)
    body = ae.get_json()
    assert (body["kind"], body["route_id"], body["fare_fen"], body["discount"]) == (
        "flat",
        "AE",
        2500,
        None,
    )
    bus = client.get(
        URL,
        query_string={"from": "B-LAOSHAN", "to": "B-NANLISHILU", "concession": "student"},
        headers=headers,
    ).get_json()
    assert (bus["kind"], bus["distance_m"], bus["fare_fen"]) == ("bus", 10000, 50)
    assert bus["breakdown"]["concession"] == "student"


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ({"from": "L1-NOWHERE", "to": "L1-GUOMAO"}, 404, "UNKNOWN_STOP"),
        ({"from": "L1-GUOMAO", "to": "L1-GUOMAO"}, 422, "SAME_STOP"),
        ({"from": "L1-JIANGUOMEN", "to": "BJ-JIANGUOMEN"}, 422, "SAME_STOP"),
        ({"from": "L2-DONGZHIMEN", "to": "AE-T3"}, 422, "NO_FARE_PATH"),
        ({"from": "L1-XIDAN", "to": "B-XIDAN"}, 422, "NO_FARE_PATH"),
        (
            {"from": "L1-XIDAN", "to": "L1-GUOMAO", "concession": "pirate"},
            422,
            "UNKNOWN_CONCESSION",
        ),
        (
            {"from": "L1-XIDAN", "to": "L1-GUOMAO", "at": "2001-01-01T00:00:00+08:00"},
            422,
            "NO_FARE_RULES",
        ),
        ({"from": "L1-XIDAN"}, 422, "VALIDATION_FAILED"),
        (
            {"from": "L1-XIDAN", "to": "L1-GUOMAO", "at": "2026-01-01T00:00:00"},
            422,
            "VALIDATION_FAILED",
        ),
    ],
)
def test_quote_problems(
    client: Any, bearer: Any, network: Any, query: dict[str, str], status: int, code: str
) -> None:
    r = client.get(URL, query_string=query, headers=bearer("transit:read"))
    assert r.status_code == status, r.get_json()
    assert r.mimetype == "application/problem+json"
    body = r.get_json()
    assert body["code"] == code
    if status == 404:
        assert body["type"] == "/problems/transit/unknown-stop"
        assert body["stop_id"] == "L1-NOWHERE"


def test_quote_before_any_import_is_503(client: Any, bearer: Any) -> None:
    r = client.get(
        URL, query_string={"from": "L1-XIDAN", "to": "L1-GUOMAO"}, headers=bearer("transit:read")
    )
    assert r.status_code == 503
    assert r.get_json()["code"] == "NETWORK_NOT_LOADED"
