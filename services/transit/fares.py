"""Beijing fares, from a rules file: rail by distance, flat-fare lines, buses, monthly discount.

The fare *values* live in data (``data/fare-rules.json``, a list of rule sets each with an
``effective_from`` date); this module only knows their shape. Everything here is a pure
function of its arguments except the three helpers at the bottom (``active_rules``,
``quote``, ``max_fare_from`` with defaults), which read the configured rules file and the
imported network once per process and cache them.

Money is integer fen throughout. A percentage is applied as ``Decimal(fen) * rate`` rounded
to the fen with ROUND_HALF_UP; floats never touch an amount (the JSON is parsed with
``parse_float=Decimal``). See docs/transit-fares.md for the rules and the decisions taken.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import timedelta
from datetime import timezone
from datetime import tzinfo
from decimal import ROUND_HALF_UP
from decimal import Decimal
from decimal import InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo
from zoneinfo import ZoneInfoNotFoundError

from citizen_card.public import DomainError
from services.transit.network import Journey
from services.transit.network import Network
from services.transit.network import current_network

DEFAULT_RULES_FILE = Path(__file__).resolve().parent / "data" / "fare-rules.json"
RULES_FORMAT = "citizen-card/transit-fare-rules/1"
ONE = Decimal(1)


def beijing_zone(key: str = "Asia/Shanghai") -> tzinfo:
    """Beijing time: the IANA zone when the tz database is installed, else a fixed UTC+8.

    Python's zoneinfo needs the system tz database (or the ``tzdata`` package); minimal
    containers have neither. China has observed no daylight saving time since 1991, so a
    fixed +08:00 gives the same wall clock for every date a fare can be charged on.
    """
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError):
        return timezone(timedelta(hours=8), "CST")


BEIJING = beijing_zone()


class FareRulesError(ValueError):
    """The fare rules file is unreadable or breaks its schema; the message says where."""


class NoRuleSetInForce(DomainError):
    """No fare rule set was in force on the trip's date (it predates the first one)."""

    status = 422
    code = "NO_FARE_RULES"
    title = "No fare rules for that date"
    title_zh = "该日期无适用票价规则"
    service = "transit"


class SameStop(DomainError):
    """A fare was asked between a stop and itself (or two platforms of one station)."""

    status = 422
    code = "SAME_STOP"
    title = "Origin and destination are the same station"
    title_zh = "起点与终点为同一车站"
    service = "transit"


class UnknownConcession(DomainError):
    """The concession group is not defined by the rule set in force."""

    status = 422
    code = "UNKNOWN_CONCESSION"
    title = "Unknown concession group"
    title_zh = "未知的优惠类别"
    service = "transit"


# --------------------------------------------------------------------------------------------
# Rules: the shape of the data file
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DistanceTier:
    """Up to ``up_to_m`` metres (inclusive) the fare is ``fare_fen``; None: any distance."""

    up_to_m: int | None
    fare_fen: int


@dataclass(frozen=True)
class DistanceScale:
    """Tiers by distance, then ``beyond_add_fen`` per ``beyond_every_m`` or part thereof."""

    tiers: tuple[DistanceTier, ...]
    beyond_every_m: int | None = None
    beyond_add_fen: int = 0

    def fare_fen(self, distance_m: int) -> int:
        """The undiscounted fare for a distance in whole metres."""
        for tier in self.tiers:
            if tier.up_to_m is None or distance_m <= tier.up_to_m:
                return tier.fare_fen
        last = self.tiers[-1]
        # Validation guarantees a bounded last tier has a "beyond" rule.
        assert last.up_to_m is not None and self.beyond_every_m is not None
        steps = -(-(distance_m - last.up_to_m) // self.beyond_every_m)  # ceiling division
        return last.fare_fen + steps * self.beyond_add_fen


@dataclass(frozen=True)
class MonthlyStep:
    """From ``spent_from_fen`` spent this month (before the ride), pay ``rate`` of the fare."""

    spent_from_fen: int
    rate: Decimal


@dataclass(frozen=True)
class FlatFare:
    """A line with one fare whatever the distance (the Airport Express)."""

    fare_fen: int
    counts_toward_month: bool


@dataclass(frozen=True)
class RailRules:
    """Distance-based rail fares, the monthly volume discount and the time limit."""

    scale: DistanceScale
    monthly_discounts: tuple[MonthlyStep, ...]
    max_minutes_inside: int
    overtime_surcharge_fen: int
    flat_fare_routes: Mapping[str, FlatFare]

    def monthly_rate(self, month_spent_fen: int) -> Decimal:
        """The share of the fare paid after ``month_spent_fen`` spent this month."""
        rate = ONE
        for step in self.monthly_discounts:
            if month_spent_fen >= step.spent_from_fen:
                rate = step.rate
        return rate


@dataclass(frozen=True)
class BusRules:
    """Bus fares by distance ridden, the card rate and the concession groups' rates."""

    scale: DistanceScale
    card_rate: Decimal
    concessions: Mapping[str, Decimal]


@dataclass(frozen=True)
class RuleSet:
    """The fares in force from ``effective_from`` (a Beijing calendar date) on."""

    name: str
    effective_from: date
    rail: RailRules
    bus: BusRules


@dataclass(frozen=True)
class FareRules:
    """Every rule set of a rules file, oldest first."""

    rule_sets: tuple[RuleSet, ...]
    source: str = "<memory>"

    def in_force(self, at: datetime) -> RuleSet:
        """The rule set in force at ``at`` (an aware datetime), judged by Beijing date."""
        day = beijing_date(at)
        found: RuleSet | None = None
        for rule_set in self.rule_sets:
            if rule_set.effective_from <= day:
                found = rule_set
        if found is None:
            first = self.rule_sets[0].effective_from
            raise NoRuleSetInForce(
                f"no fare rule set is in force on {day.isoformat()} (the first starts "
                f"{first.isoformat()})",
                date=day.isoformat(),
            )
        return found


def load_rules(path: str | Path) -> FareRules:
    """Read and validate a fare rules file (JSON); raise FareRulesError naming the problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FareRulesError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise FareRulesError(f"{path}: not UTF-8 text: {exc}") from exc
    try:
        # Decimal, not float: a rate such as 0.8 must stay exactly 0.8.
        data = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise FareRulesError(
            f"{path}: line {exc.lineno} column {exc.colno}: invalid JSON: {exc.msg}"
        ) from exc
    return parse_rules(data, source=str(path))


def parse_rules(data: Any, *, source: str = "<memory>") -> FareRules:
    """Validate an already-decoded rules document (see load_rules)."""
    reader = _Reader(source)
    top = reader.obj(data, "", {"format", "description", "rule_sets"}, {"rule_sets"})
    if "format" in top and top["format"] != RULES_FORMAT:
        reader.fail("format", f"must be {RULES_FORMAT!r}, got {top['format']!r}")
    raw_sets = top["rule_sets"]
    if not isinstance(raw_sets, list) or not raw_sets:
        reader.fail("rule_sets", "must be a non-empty list")
    rule_sets = [reader.rule_set(raw, f"rule_sets[{i}]") for i, raw in enumerate(raw_sets)]
    seen: dict[date, str] = {}
    names: set[str] = set()
    for i, rule_set in enumerate(rule_sets):
        where = f"rule_sets[{i}]"
        if rule_set.effective_from in seen:
            reader.fail(
                f"{where}.effective_from",
                f"{rule_set.effective_from} is also the start of {seen[rule_set.effective_from]!r}",
            )
        if rule_set.name in names:
            reader.fail(f"{where}.name", f"duplicate name {rule_set.name!r}")
        seen[rule_set.effective_from] = rule_set.name
        names.add(rule_set.name)
    rule_sets.sort(key=lambda r: r.effective_from)
    return FareRules(rule_sets=tuple(rule_sets), source=source)


class _Reader:
    """Schema checks that name the offending path, e.g. ``rule_sets[1].rail.tiers[2]``."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, message: str) -> Any:
        """Raise FareRulesError for the value at ``where``."""
        raise FareRulesError(f"{self.source}: {where or '(top level)'}: {message}")

    def obj(self, value: Any, where: str, allowed: set[str], required: set[str]) -> dict[str, Any]:
        """An object with only ``allowed`` keys and every ``required`` one."""
        if not isinstance(value, dict):
            self.fail(where, "must be an object")
        unknown = set(value) - allowed
        if unknown:
            # Unknown keys are refused: a misspelt key would otherwise silently not apply.
            self.fail(where, f"unknown key(s) {', '.join(sorted(unknown))}")
        missing = required - set(value)
        if missing:
            self.fail(where, f"missing key(s) {', '.join(sorted(missing))}")
        checked: dict[str, Any] = value
        return checked

    def integer(self, value: Any, where: str, *, minimum: int = 0) -> int:
        """An integer (not a bool, not a decimal) of at least ``minimum``."""
        # bool is an int in Python; a fare of `true` fen is a mistake.
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(where, f"must be an integer, got {value!r}")
        if value < minimum:
            self.fail(where, f"must be at least {minimum}, got {value}")
        return int(value)

    def rate(self, value: Any, where: str) -> Decimal:
        """A share from 0 to 1, exact (a JSON number arrives as Decimal, or a string)."""
        if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
            self.fail(where, f'must be a decimal such as "0.80", got {value!r}')
        try:
            rate = Decimal(str(value))
        except InvalidOperation:
            rate = Decimal("NaN")
        if not rate.is_finite() or not Decimal(0) <= rate <= ONE:
            self.fail(where, f"must be a decimal from 0 to 1, got {value!r}")
        return rate

    def day(self, value: Any, where: str) -> date:
        """A calendar date written YYYY-MM-DD."""
        try:
            return date.fromisoformat(value)
        except (TypeError, ValueError):
            return self.fail(where, f"must be a date YYYY-MM-DD, got {value!r}")  # type: ignore[no-any-return]

    def scale(self, raw: dict[str, Any], where: str) -> DistanceScale:
        """Distance tiers, increasing, then the ``beyond`` rule if the last is bounded."""
        tiers_raw = raw["tiers"]
        if not isinstance(tiers_raw, list) or not tiers_raw:
            self.fail(f"{where}.tiers", "must be a non-empty list")
        tiers: list[DistanceTier] = []
        for i, tier_raw in enumerate(tiers_raw):
            at = f"{where}.tiers[{i}]"
            tier = self.obj(tier_raw, at, {"up_to_m", "fare_fen"}, {"up_to_m", "fare_fen"})
            up_to = tier["up_to_m"]
            if up_to is None:
                if i != len(tiers_raw) - 1:
                    self.fail(f"{at}.up_to_m", "only the last tier may be unbounded (null)")
            else:
                up_to = self.integer(up_to, f"{at}.up_to_m", minimum=1)
                if tiers and tiers[-1].up_to_m is not None and up_to <= tiers[-1].up_to_m:
                    self.fail(f"{at}.up_to_m", f"must be greater than {tiers[-1].up_to_m}")
            fare = self.integer(tier["fare_fen"], f"{at}.fare_fen")
            if tiers and fare < tiers[-1].fare_fen:
                self.fail(f"{at}.fare_fen", "a longer distance may not cost less")
            tiers.append(DistanceTier(up_to_m=up_to, fare_fen=fare))
        beyond = raw.get("beyond")
        if tiers[-1].up_to_m is None:
            if beyond is not None:
                self.fail(f"{where}.beyond", "has no effect after an unbounded last tier")
            return DistanceScale(tiers=tuple(tiers))
        if beyond is None:
            self.fail(f"{where}.beyond", "is required when the last tier is bounded")
        rule = self.obj(beyond, f"{where}.beyond", {"every_m", "add_fen"}, {"every_m", "add_fen"})
        return DistanceScale(
            tiers=tuple(tiers),
            beyond_every_m=self.integer(rule["every_m"], f"{where}.beyond.every_m", minimum=1),
            beyond_add_fen=self.integer(rule["add_fen"], f"{where}.beyond.add_fen"),
        )

    def rail(self, raw: Any, where: str) -> RailRules:
        """The ``rail`` part of a rule set."""
        keys = {
            "tiers",
            "beyond",
            "monthly_discounts",
            "max_minutes_inside",
            "overtime_surcharge_fen",
            "flat_fare_routes",
        }
        rail = self.obj(raw, where, keys, keys - {"beyond"})
        steps_raw = rail["monthly_discounts"]
        if not isinstance(steps_raw, list):
            self.fail(f"{where}.monthly_discounts", "must be a list")
        steps: list[MonthlyStep] = []
        for i, step_raw in enumerate(steps_raw):
            at = f"{where}.monthly_discounts[{i}]"
            step = self.obj(step_raw, at, {"spent_from_fen", "rate"}, {"spent_from_fen", "rate"})
            spent = self.integer(step["spent_from_fen"], f"{at}.spent_from_fen", minimum=1)
            if steps and spent <= steps[-1].spent_from_fen:
                self.fail(
                    f"{at}.spent_from_fen", f"must be greater than {steps[-1].spent_from_fen}"
                )
            steps.append(
                MonthlyStep(spent_from_fen=spent, rate=self.rate(step["rate"], f"{at}.rate"))
            )
        flats_raw = rail["flat_fare_routes"]
        if not isinstance(flats_raw, dict):
            self.fail(f"{where}.flat_fare_routes", "must be an object keyed by GTFS route_id")
        flats: dict[str, FlatFare] = {}
        for route_id, flat_raw in flats_raw.items():
            at = f"{where}.flat_fare_routes.{route_id}"
            flat = self.obj(flat_raw, at, {"fare_fen", "counts_toward_month"}, {"fare_fen"})
            counts = flat.get("counts_toward_month", False)
            if not isinstance(counts, bool):
                self.fail(f"{at}.counts_toward_month", "must be true or false")
            flats[route_id] = FlatFare(
                fare_fen=self.integer(flat["fare_fen"], f"{at}.fare_fen"),
                counts_toward_month=counts,
            )
        return RailRules(
            scale=self.scale(rail, where),
            monthly_discounts=tuple(steps),
            max_minutes_inside=self.integer(
                rail["max_minutes_inside"], f"{where}.max_minutes_inside", minimum=1
            ),
            overtime_surcharge_fen=self.integer(
                rail["overtime_surcharge_fen"], f"{where}.overtime_surcharge_fen"
            ),
            flat_fare_routes=flats,
        )

    def bus(self, raw: Any, where: str) -> BusRules:
        """The ``bus`` part of a rule set."""
        keys = {"tiers", "beyond", "card_rate", "concessions"}
        bus = self.obj(raw, where, keys, keys - {"beyond"})
        concessions_raw = bus["concessions"]
        if not isinstance(concessions_raw, dict):
            self.fail(f"{where}.concessions", "must be an object: group -> rate")
        concessions = {
            str(group): self.rate(rate, f"{where}.concessions.{group}")
            for group, rate in concessions_raw.items()
        }
        return BusRules(
            scale=self.scale(bus, where),
            card_rate=self.rate(bus["card_rate"], f"{where}.card_rate"),
            concessions=concessions,
        )

    def rule_set(self, raw: Any, where: str) -> RuleSet:
        """One entry of ``rule_sets``."""
        keys = {"name", "effective_from", "description", "rail", "bus"}
        rule_set = self.obj(raw, where, keys, keys - {"description"})
        name = rule_set["name"]
        if not isinstance(name, str) or not name.strip():
            self.fail(f"{where}.name", "must be a non-empty string")
        return RuleSet(
            name=name,
            effective_from=self.day(rule_set["effective_from"], f"{where}.effective_from"),
            rail=self.rail(rule_set["rail"], f"{where}.rail"),
            bus=self.bus(rule_set["bus"], f"{where}.bus"),
        )


# --------------------------------------------------------------------------------------------
# Time: Beijing dates and months
# --------------------------------------------------------------------------------------------


def _aware(at: datetime, name: str = "at") -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        # A naive time could be UTC or Beijing: 8 hours of ambiguity decide the month.
        raise ValueError(f"{name} must be timezone-aware, got {at!r}")
    return at


def beijing_date(at: datetime) -> date:
    """The Beijing calendar date of an aware datetime."""
    return _aware(at).astimezone(BEIJING).date()


def beijing_month(at: datetime) -> tuple[int, int]:
    """(year, month) in Beijing time: the month whose rail spend the discount counts."""
    local = _aware(at).astimezone(BEIJING)
    return local.year, local.month


def month_window(at: datetime) -> tuple[datetime, datetime]:
    """The Beijing month containing ``at`` as [start, end) in UTC, for summing a card's spend."""
    year, month = beijing_month(at)
    start = datetime(year, month, 1, tzinfo=BEIJING)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=BEIJING)
    return start.astimezone(UTC), end.astimezone(UTC)


# --------------------------------------------------------------------------------------------
# Fares: pure functions
# --------------------------------------------------------------------------------------------


def apply_rate(amount_fen: int, rate: Decimal) -> int:
    """``amount_fen * rate`` rounded to the fen, half up (0.5 fen and above rounds up)."""
    return int((Decimal(amount_fen) * rate).quantize(ONE, rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class FareBreakdown:
    """What a ride costs and why.

    ``discount_rate`` is the share of ``base_fen`` paid (0.80 = 八折, 1 = no discount);
    ``total_fen = base_fen - discount_fen + surcharge_fen + penalty_fen``.
    ``counts_toward_month_fen`` is what this ride adds to the card's monthly rail spend.
    """

    kind: str  # "rail", "flat" or "bus"
    distance_m: int
    base_fen: int
    discount_rate: Decimal
    discount_fen: int
    surcharge_fen: int
    penalty_fen: int
    total_fen: int
    rule_set: str
    counts_toward_month_fen: int = 0
    route_id: str | None = None
    concession: str | None = None


def _check_distance(distance_m: int) -> None:
    if isinstance(distance_m, bool) or not isinstance(distance_m, int) or distance_m < 0:
        raise ValueError(f"distance_m must be a non-negative integer, got {distance_m!r}")


def overtime_surcharge_fen(rule_set: RuleSet, *, entered_at: datetime | None, at: datetime) -> int:
    """The surcharge for staying longer than allowed inside the paid area (0 if within)."""
    if entered_at is None:
        return 0
    inside = _aware(at) - _aware(entered_at, "entered_at")
    if inside > timedelta(minutes=rule_set.rail.max_minutes_inside):
        return rule_set.rail.overtime_surcharge_fen
    return 0


def rail_fare(
    distance_m: int,
    *,
    rules: FareRules,
    at: datetime,
    month_spent_fen: int = 0,
    entered_at: datetime | None = None,
) -> FareBreakdown:
    """The fare of a distance-based rail ride charged at ``at`` (the tap-out).

    ``month_spent_fen`` is the card's rail spend this Beijing month *before* this ride (see
    ``month_window``); it picks the monthly discount rate. ``entered_at`` (the tap-in) adds
    the overtime surcharge when the ride exceeded the time limit. The surcharge is not
    discounted and does not count toward the monthly spend.
    """
    _check_distance(distance_m)
    if month_spent_fen < 0:
        raise ValueError("month_spent_fen must not be negative")
    rule_set = rules.in_force(at)
    base = rule_set.rail.scale.fare_fen(distance_m)
    rate = rule_set.rail.monthly_rate(month_spent_fen)
    payable = apply_rate(base, rate)
    surcharge = overtime_surcharge_fen(rule_set, entered_at=entered_at, at=at)
    return FareBreakdown(
        kind="rail",
        distance_m=distance_m,
        base_fen=base,
        discount_rate=rate,
        discount_fen=base - payable,
        surcharge_fen=surcharge,
        penalty_fen=0,
        total_fen=payable + surcharge,
        rule_set=rule_set.name,
        counts_toward_month_fen=payable,
    )


def flat_fare(
    route_id: str,
    *,
    rules: FareRules,
    at: datetime,
    distance_m: int = 0,
    entered_at: datetime | None = None,
) -> FareBreakdown:
    """The fare of a ride on a flat-fare line (Airport Express): no monthly discount.

    Whether it counts toward the monthly rail spend is the rule file's
    ``counts_toward_month`` (false for Beijing's Airport Express). The time limit applies.
    """
    _check_distance(distance_m)
    rule_set = rules.in_force(at)
    flat = rule_set.rail.flat_fare_routes.get(route_id)
    if flat is None:
        raise FareRulesError(
            f"{rules.source}: rule set {rule_set.name!r} has no flat fare for route {route_id!r}"
        )
    surcharge = overtime_surcharge_fen(rule_set, entered_at=entered_at, at=at)
    return FareBreakdown(
        kind="flat",
        distance_m=distance_m,
        base_fen=flat.fare_fen,
        discount_rate=ONE,
        discount_fen=0,
        surcharge_fen=surcharge,
        penalty_fen=0,
        total_fen=flat.fare_fen + surcharge,
        rule_set=rule_set.name,
        counts_toward_month_fen=flat.fare_fen if flat.counts_toward_month else 0,
        route_id=route_id,
    )


@dataclass(frozen=True)
class Concession:
    """A card's concession group (``student``, ``senior``, ``disabled``…) and its expiry.

    ``valid_until`` is the last Beijing date on which the concession applies.
    """

    group: str
    valid_until: date

    def valid_on(self, day: date) -> bool:
        """True when the concession still applies on that Beijing date."""
        return day <= self.valid_until


def bus_fare(
    distance_m: int,
    *,
    rules: FareRules,
    at: datetime,
    concession: Concession | None = None,
    paid_with_card: bool = True,
    route_id: str | None = None,
) -> FareBreakdown:
    """The fare of a bus ride of ``distance_m`` boarded-to-alighted, charged at ``at``.

    Cash pays the full fare, a card the card rate; a card with a concession still valid on
    the ride's Beijing date pays its group's rate instead (0 = free). An expired concession,
    or a group the rule set in force does not know, pays the ordinary card rate.
    """
    _check_distance(distance_m)
    rule_set = rules.in_force(at)
    base = rule_set.bus.scale.fare_fen(distance_m)
    rate = ONE
    applied: str | None = None
    if paid_with_card:
        rate = rule_set.bus.card_rate
        if concession is not None and concession.valid_on(beijing_date(at)):
            group_rate = rule_set.bus.concessions.get(concession.group)
            if group_rate is not None:
                rate = group_rate
                applied = concession.group
    payable = apply_rate(base, rate)
    return FareBreakdown(
        kind="bus",
        distance_m=distance_m,
        base_fen=base,
        discount_rate=rate,
        discount_fen=base - payable,
        surcharge_fen=0,
        penalty_fen=0,
        total_fen=payable,
        rule_set=rule_set.name,
        route_id=route_id,
        concession=applied,
    )


@dataclass(frozen=True)
class DiscountProgress:
    """Where a card stands in the monthly rail discount."""

    spent_fen: int
    rate: Decimal
    next_threshold_fen: int | None
    next_rate: Decimal | None
    remaining_fen: int | None
    rule_set: str


def discount_progress(month_spent_fen: int, *, rules: FareRules, at: datetime) -> DiscountProgress:
    """The rate now, the next threshold and how much more spend reaches it (None at the top)."""
    if month_spent_fen < 0:
        raise ValueError("month_spent_fen must not be negative")
    rule_set = rules.in_force(at)
    rail = rule_set.rail
    for step in rail.monthly_discounts:
        if month_spent_fen < step.spent_from_fen:
            return DiscountProgress(
                spent_fen=month_spent_fen,
                rate=rail.monthly_rate(month_spent_fen),
                next_threshold_fen=step.spent_from_fen,
                next_rate=step.rate,
                remaining_fen=step.spent_from_fen - month_spent_fen,
                rule_set=rule_set.name,
            )
    return DiscountProgress(
        spent_fen=month_spent_fen,
        rate=rail.monthly_rate(month_spent_fen),
        next_threshold_fen=None,
        next_rate=None,
        remaining_fen=None,
        rule_set=rule_set.name,
    )


@dataclass(frozen=True)
class RailRide:
    """One rail ride for ``price_rail_rides``: charged at ``at``; flat line if ``route_id``."""

    at: datetime
    distance_m: int
    entered_at: datetime | None = None
    flat_route_id: str | None = None


def price_rail_rides(
    rides: Iterable[RailRide], *, rules: FareRules, month_spent_fen: int = 0
) -> list[FareBreakdown]:
    """Price one card's rail rides in time order, carrying the monthly spend between them.

    The spend restarts at 0 when a ride falls in a new Beijing month. ``month_spent_fen``
    is the spend before the first ride, in that ride's month. For recomputation and audit;
    the tap path prices one ride with ``rail_fare`` and a spend summed from the database.
    """
    priced: list[FareBreakdown] = []
    month: tuple[int, int] | None = None
    spent = month_spent_fen
    for ride in sorted(rides, key=lambda r: r.at):
        ride_month = beijing_month(ride.at)
        if month is not None and ride_month != month:
            spent = 0
        month = ride_month
        if ride.flat_route_id is not None:
            fare = flat_fare(
                ride.flat_route_id,
                rules=rules,
                at=ride.at,
                distance_m=ride.distance_m,
                entered_at=ride.entered_at,
            )
        else:
            fare = rail_fare(
                ride.distance_m,
                rules=rules,
                at=ride.at,
                month_spent_fen=spent,
                entered_at=ride.entered_at,
            )
        spent += fare.counts_toward_month_fen
        priced.append(fare)
    return priced


def fare_for_journey(
    journey: Journey,
    *,
    rules: FareRules,
    at: datetime,
    month_spent_fen: int = 0,
    entered_at: datetime | None = None,
    concession: Concession | None = None,
) -> FareBreakdown:
    """Price a journey found on the network (rail, flat-fare line or one bus route)."""
    if journey.kind == "rail":
        return rail_fare(
            journey.distance_m,
            rules=rules,
            at=at,
            month_spent_fen=month_spent_fen,
            entered_at=entered_at,
        )
    if journey.kind == "flat":
        assert journey.route_id is not None
        return flat_fare(
            journey.route_id,
            rules=rules,
            at=at,
            distance_m=journey.distance_m,
            entered_at=entered_at,
        )
    return bus_fare(
        journey.distance_m, rules=rules, at=at, concession=concession, route_id=journey.route_id
    )


def max_fare_for(
    stop_id: str, *, network: Network, rules: FareRules, at: datetime
) -> FareBreakdown:
    """The penalty for a tap-in at ``stop_id`` with no tap-out: the highest fare from there.

    Rail: the fare to the farthest station reachable as one distance-based journey;
    flat-fare line: its fare; bus: the full fare to the farthest stop down the route. No
    discount applies and the amount does not count toward the monthly spend. The result
    carries it as ``penalty_fen`` (``base_fen`` 0), so it can be stored as the ride's charge.
    """
    rule_set = rules.in_force(at)
    best_fen = -1
    best: Journey | None = None
    for journey in network.farthest_journeys(stop_id):
        fare = fare_for_journey(journey, rules=rules, at=at)
        # The base fare, not a card rate: the penalty is the undiscounted maximum.
        if fare.base_fen > best_fen:
            best_fen, best = fare.base_fen, journey
    if best is None:
        best_fen = 0
    return FareBreakdown(
        kind=best.kind if best is not None else "rail",
        distance_m=best.distance_m if best is not None else 0,
        base_fen=0,
        discount_rate=ONE,
        discount_fen=0,
        surcharge_fen=0,
        penalty_fen=best_fen,
        total_fen=best_fen,
        rule_set=rule_set.name,
        route_id=best.route_id if best is not None else None,
    )


# --------------------------------------------------------------------------------------------
# Process-wide caches and the quote action
# --------------------------------------------------------------------------------------------

_rules_lock = threading.Lock()
_rules_cache: dict[tuple[str, int, int], FareRules] = {}


_rules_checked: dict[str, tuple[float, FareRules]] = {}
# How often a process looks at the rules file again (a stat per tap showed in profiles).
RULES_CHECK_SECONDS = 1.0


def rules_from_file(path: str | Path) -> FareRules:
    """Load a rules file once per process; reloaded when its mtime or size changes.

    The file is looked at again at most once a second, so a change takes effect within a
    second (rules carry effective dates: changes are published ahead of time anyway).
    """
    seen = _rules_checked.get(str(path))
    now = time.monotonic()
    if seen is not None and now - seen[0] < RULES_CHECK_SECONDS:
        return seen[1]
    rules = _rules_from_file(path)
    _rules_checked[str(path)] = (now, rules)
    return rules


def _rules_from_file(path: str | Path) -> FareRules:
    resolved = Path(path).resolve()
    try:
        stat = resolved.stat()
    except OSError as exc:
        raise FareRulesError(f"{resolved}: cannot read: {exc.strerror or exc}") from exc
    key = (str(resolved), stat.st_mtime_ns, stat.st_size)
    cached = _rules_cache.get(key)
    if cached is not None:
        return cached
    with _rules_lock:
        cached = _rules_cache.get(key)
        if cached is None:
            cached = load_rules(resolved)
            # Keep only the newest version of each file.
            for old in [k for k in _rules_cache if k[0] == key[0]]:
                del _rules_cache[old]
            _rules_cache[key] = cached
    return cached


def active_rules() -> FareRules:
    """The rules from the app's ``TRANSIT_FARE_RULES_FILE`` (cached; needs an app context)."""
    from flask import current_app

    return rules_from_file(current_app.config["TRANSIT_FARE_RULES_FILE"])


@dataclass(frozen=True)
class FareQuote:
    """A fare quote between two stops: the journey found and its breakdown."""

    from_stop_id: str
    from_name: str
    to_stop_id: str
    to_name: str
    kind: str
    route_id: str | None
    distance_m: int
    fare_fen: int
    path: tuple[str, ...]
    breakdown: FareBreakdown
    discount: DiscountProgress | None


def quote(
    from_id: str,
    to_id: str,
    *,
    at: datetime | None = None,
    month_spent_fen: int = 0,
    concession: str | None = None,
    network: Network | None = None,
    rules: FareRules | None = None,
) -> FareQuote:
    """Quote the fare from one stop (or station) to another at ``at`` (default: now).

    ``month_spent_fen`` is the hook for a card's monthly discount: the caller sums the
    card's rail spend this Beijing month (``month_window``) and passes it in; 0 quotes the
    undiscounted fare. ``concession`` names a bus concession group assumed valid.
    Raises UnknownStop (404), SameStop, NoFarePath, UnknownConcession (422),
    NetworkNotLoaded (503).
    """
    when = at if at is not None else datetime.now(UTC)
    net = network if network is not None else current_network()
    fare_rules = rules if rules is not None else active_rules()
    rule_set = fare_rules.in_force(when)
    card_concession: Concession | None = None
    if concession is not None:
        if concession not in rule_set.bus.concessions:
            raise UnknownConcession(
                f"rule set {rule_set.name!r} knows the groups "
                f"{', '.join(sorted(rule_set.bus.concessions)) or '(none)'}",
                concession=concession,
            )
        card_concession = Concession(concession, valid_until=beijing_date(when))
    origin, destination = net.stop(from_id), net.stop(to_id)
    if net.same_station(from_id, to_id):
        raise SameStop(f"{from_id} and {to_id} are the same station", stop_ids=[from_id, to_id])
    journey = net.journey(from_id, to_id)
    breakdown = fare_for_journey(
        journey,
        rules=fare_rules,
        at=when,
        month_spent_fen=month_spent_fen,
        concession=card_concession,
    )
    progress = (
        discount_progress(month_spent_fen, rules=fare_rules, at=when)
        if journey.kind == "rail"
        else None
    )
    return FareQuote(
        from_stop_id=origin.stop_id,
        from_name=origin.name,
        to_stop_id=destination.stop_id,
        to_name=destination.name,
        kind=journey.kind,
        route_id=journey.route_id,
        distance_m=journey.distance_m,
        fare_fen=breakdown.total_fen,
        path=journey.path,
        breakdown=breakdown,
        discount=progress,
    )


def max_fare_from(
    stop_id: str,
    *,
    at: datetime,
    network: Network | None = None,
    rules: FareRules | None = None,
) -> FareBreakdown:
    """The penalty fare for a tap-in at ``stop_id`` with no tap-out (see ``max_fare_for``).

    Defaults to the imported network and the configured rules (needs an app context).
    """
    return max_fare_for(
        stop_id,
        network=network if network is not None else current_network(),
        rules=rules if rules is not None else active_rules(),
        at=at,
    )
