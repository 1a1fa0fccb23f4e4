"""Taps in bulk: an online tap or a whole offline upload in a handful of statements.

The rules are those of :mod:`services.transit.taps`; this is their fast form for the common
case, where every row a tap touches is read at once, the decisions are made in memory, and
the writes go out together (citizen_card.bulk: one pipeline on PostgreSQL):

1. one read run: lock the holders' wallets (id order), then read the cards, their open trips,
   pending exits, unpaid penalties, month spends, concessions, the network's token, (for
   uploads) earlier answers to the same taps, and reserve ids for new trips and entries;
2. decide each citizen's taps in time order, in memory;
3. one write run: trips, ledger entries, postings, balances, trip updates, month spends,
   taps, spent counters and audit rows; then the caller commits.

Whoever moves a wallet's money holds its row lock until commit, and step 1 takes those locks
before it reads, so what it reads cannot change under it. Anything out of the common case —
a card refusal, a first tap that activates a card, an unknown stop, a penalty to charge, an
exit waiting to be paired, a missing wallet — sends all of that citizen's taps to the careful
path (``taps.tap``, one at a time), which handles every case. A failed write (a counter
spent elsewhere, an online tap sent again) rolls the whole bulk part back and sends
everything there too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from datetime import date
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean
from sqlalchemy import Date
from sqlalchemy import DateTime

from citizen_card.public import CARD_HOLDERS_SQL
from citizen_card.public import Actor
from citizen_card.public import BulkError
from citizen_card.public import CardRecord
from citizen_card.public import CardRefused
from citizen_card.public import DomainError
from citizen_card.public import InsufficientFunds
from citizen_card.public import NewEntry
from citizen_card.public import SignedTransaction
from citizen_card.public import Step
from citizen_card.public import card_records
from citizen_card.public import card_records_step
from citizen_card.public import check_card
from citizen_card.public import check_moves
from citizen_card.public import db
from citizen_card.public import entry_ids_step
from citizen_card.public import entry_steps
from citizen_card.public import get_account
from citizen_card.public import lock_card_wallets_step
from citizen_card.public import locked_wallets
from citizen_card.public import new_ids
from citizen_card.public import new_ids_step
from citizen_card.public import run_bulk
from citizen_card.public import spend_steps
from citizen_card.public import sql
from services.transit.fares import Concession
from services.transit.fares import FareBreakdown
from services.transit.fares import FareRules
from services.transit.fares import SameStop
from services.transit.fares import active_rules
from services.transit.fares import beijing_date
from services.transit.fares import fare_for_journey
from services.transit.fares import rail_fare
from services.transit.network import NETWORK_ROW_ID
from services.transit.network import Network
from services.transit.network import cached_network
from services.transit.network import current_network
from services.transit.taps import REVENUE_OWNER
from services.transit.taps import TapOutcome
from services.transit.taps import _at
from services.transit.taps import _month
from services.transit.taps import _result
from services.transit.taps import _utc
from services.transit.taps import breakdown
from services.transit.taps import fare_columns

_TZ = DateTime(timezone=True)
_STORED = sql(
    "SELECT card_number, atc, response FROM transit_tap"
    " WHERE card_number IN :numbers AND atc IN :atcs",
    lists=["numbers", "atcs:bigint"],
)
# What the taps of these cards depend on, by card: open trips, exits waiting for their entry,
# and the month's rail spend (one statement: each costs as much to send as to run).
_BY_CARD = sql(
    "SELECT 'trip' AS kind, card_number, id, entry_stop AS label, entry_at AS at,"
    " entry_atc AS amount, service_day AS day FROM transit_trip"
    " WHERE card_number IN :numbers AND status = 'open'"
    " UNION ALL SELECT 'pending', card_number, NULL, NULL, tapped_at, NULL, NULL"
    " FROM transit_tap WHERE card_number IN :numbers AND outcome = 'pending'"
    " UNION ALL SELECT 'month', card_number, NULL, month, NULL, spent_fen, NULL"
    " FROM transit_month_spend WHERE card_number IN :numbers AND month IN :months",
    lists=["numbers", "months"],
    columns={"at": _TZ, "day": Date()},
)
# ... and by holder: an unpaid penalty, a bus concession.
_BY_HOLDER = sql(
    "SELECT 'due' AS kind, citizen_id, MIN(id) AS trip_id, NULL AS label, NULL AS valid_until"
    f" FROM transit_trip WHERE citizen_id IN ({CARD_HOLDERS_SQL}) AND status = 'penalty_due'"
    " GROUP BY citizen_id UNION ALL SELECT 'concession', citizen_id, NULL, \"group\","
    f" valid_until FROM transit_concession WHERE citizen_id IN ({CARD_HOLDERS_SQL})",
    lists=["numbers"],
    columns={"valid_until": Date()},
)
# ... and for everyone: the network's token (is the cached graph current?), the revenue account.
_CONTEXT = sql(
    "SELECT (SELECT token FROM transit_network WHERE id = :network),"
    " (SELECT id FROM ledger_account WHERE kind = 'revenue' AND owner = :owner)"
)
_TRIP_COLUMNS = (
    "id, citizen_id, card_number, status, entry_stop, entry_at, entry_atc, exit_stop, exit_at,"
    " exit_atc, journey_kind, route_id, distance_m, base_fen, discount_permille, discount_fen,"
    " surcharge_fen, penalty_fen, fare_fen, ledger_entry_id, service_day"
)
_INSERT_TRIPS = sql(
    f"INSERT INTO transit_trip ({_TRIP_COLUMNS}) VALUES ("
    + ", ".join(f":{c.strip()}" for c in _TRIP_COLUMNS.split(","))
    + ")",
    types={"entry_at": _TZ, "exit_at": _TZ, "service_day": Date()},
)
_UPDATE_TRIPS = sql(
    "UPDATE transit_trip SET status = :status, exit_stop = :exit_stop, exit_at = :exit_at,"
    " exit_atc = :exit_atc, journey_kind = :journey_kind, route_id = :route_id,"
    " distance_m = :distance_m, base_fen = :base_fen, discount_permille = :discount_permille,"
    " discount_fen = :discount_fen, surcharge_fen = :surcharge_fen, penalty_fen = :penalty_fen,"
    " fare_fen = :fare_fen, ledger_entry_id = :ledger_entry_id"
    " WHERE id = :id AND status = :was RETURNING id",
    types={"exit_at": _TZ},
    postgresql="UPDATE transit_trip AS t SET status = u.status, exit_stop = u.exit_stop,"
    " exit_at = u.exit_at, exit_atc = u.exit_atc, journey_kind = u.journey_kind,"
    " route_id = u.route_id, distance_m = u.distance_m, base_fen = u.base_fen,"
    " discount_permille = u.discount_permille, discount_fen = u.discount_fen,"
    " surcharge_fen = u.surcharge_fen, penalty_fen = u.penalty_fen, fare_fen = u.fare_fen,"
    " ledger_entry_id = u.ledger_entry_id FROM unnest(:id::integer[], :was::text[],"
    " :status::text[], :exit_stop::text[], :exit_at::timestamptz[], :exit_atc::bigint[],"
    " :journey_kind::text[], :route_id::text[], :distance_m::integer[], :base_fen::integer[],"
    " :discount_permille::integer[], :discount_fen::integer[], :surcharge_fen::integer[],"
    " :penalty_fen::integer[], :fare_fen::integer[], :ledger_entry_id::bigint[])"
    " AS u(id, was, status, exit_stop, exit_at, exit_atc, journey_kind, route_id, distance_m,"
    " base_fen, discount_permille, discount_fen, surcharge_fen, penalty_fen, fare_fen,"
    " ledger_entry_id) WHERE t.id = u.id AND t.status = u.was RETURNING t.id",
    arrays=True,
)
_ADD_MONTH = sql(
    "INSERT INTO transit_month_spend (card_number, month, spent_fen)"
    " VALUES (:card_number, :month, :spent_fen) ON CONFLICT (card_number, month)"
    " DO UPDATE SET spent_fen = transit_month_spend.spent_fen + excluded.spent_fen"
)
_INSERT_TAPS = sql(
    "INSERT INTO transit_tap (card_number, atc, direction, stop_id, terminal_id, tapped_at,"
    " offline, outcome, trip_id, response) VALUES (:card_number, :atc, :direction, :stop_id,"
    " :terminal_id, :tapped_at, :offline, :outcome, :trip_id, :response)",
    types={"tapped_at": _TZ, "offline": Boolean()},
)


_State = tuple[
    dict[str, CardRecord],
    dict[int, "_Holder"],
    dict[tuple[str, int], str],
    int | None,
    Iterator[int],
    list[int],
]


class _Careful(Exception):
    """This citizen's taps need the careful path."""


@dataclass
class TapItem:
    """One tap of a request: its place in the upload, the card's transaction, where and how."""

    index: int
    tx: SignedTransaction
    direction: str
    stop_id: str


@dataclass(eq=False)
class _Trip:
    id: int
    citizen_id: int
    card_number: str
    entry_stop: str
    entry_at: datetime
    entry_atc: int
    service_day: date
    was: str = "open"  # its status in the database; "new" until inserted
    status: str = "open"
    exit_stop: str | None = None
    exit_at: datetime | None = None
    exit_atc: int | None = None
    journey_kind: str | None = None
    route_id: str | None = None
    fare: FareBreakdown | None = None
    entry: int | None = None  # its ledger entry's id, once it has one

    def row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ledger_entry_id": None,
            "citizen_id": self.citizen_id,
            "card_number": self.card_number,
            "status": self.status,
            "entry_stop": self.entry_stop,
            "entry_at": self.entry_at,
            "entry_atc": self.entry_atc,
            "exit_stop": self.exit_stop,
            "exit_at": self.exit_at,
            "exit_atc": self.exit_atc,
            "journey_kind": self.journey_kind,
            "route_id": self.route_id,
            **fare_columns(self.fare),
            "service_day": self.service_day,
        }

    def breakdown(self) -> dict[str, Any]:
        return breakdown(self.id, fare_columns(self.fare))


@dataclass
class _Holder:
    """A citizen's state for this run, read under their wallet's lock."""

    citizen_id: int
    wallet_id: int
    balance: int
    due_trip: int | None
    concession: Concession | None
    open_trips: dict[str, list[_Trip]]
    pending: dict[str, list[datetime]]
    months: dict[tuple[str, str], int]
    trip_ids: list[int] = field(default_factory=list)  # reserved for new trips


@dataclass
class _Decision:
    item: TapItem
    card: CardRecord
    outcome: str  # accepted, refused, pending, or "replay"
    body: Callable[[], dict[str, Any]]
    trip: _Trip | None = None


@dataclass
class _Plan:
    """What one citizen's taps decided, applied only if all of them could be decided."""

    decisions: list[_Decision] = field(default_factory=list)
    new_trips: list[_Trip] = field(default_factory=list)
    closed: list[_Trip] = field(default_factory=list)
    months: dict[tuple[str, str], int] = field(default_factory=dict)


def ingest(
    items: list[TapItem], *, actor: Actor, terminal: str, offline: bool
) -> tuple[dict[int, TapOutcome], list[TapItem]]:
    """Decide and write what the fast form can; (outcomes by index, items for ``taps.tap``).

    Writes in the session's transaction; the caller commits. Items left over must be run
    through the careful path afterwards, in time order.
    """
    if not items:
        return {}, []
    # A process's first tap loads the network (one query); later ones check its token below.
    network = cached_network() or current_network()
    rules = active_rules()
    careful = [i for i in items if i.stop_id not in network.stops]
    items = [i for i in items if i.stop_id in network.stops]
    if not items:
        return {}, careful
    read = _read(items, network, offline=offline)
    if read is None:  # the network was imported again: the careful path loads it
        return {}, sorted(careful + items, key=_order)
    cards, holders, stored, revenue_id, trip_ids, entry_ids = read
    by_citizen: dict[int, list[TapItem]] = {}
    for item in items:
        card = cards.get(item.tx.card_number)
        if card is None:
            careful.append(item)
        else:
            by_citizen.setdefault(card.citizen_id, []).append(item)
    plans: list[_Plan] = []
    for citizen_id, own in by_citizen.items():
        holder = holders.get(citizen_id)
        try:
            if holder is None:
                raise _Careful  # no wallet yet: the careful path opens one
            for item in own:
                card = cards[item.tx.card_number]
                if card.status != "active":
                    raise _Careful  # the first tap activates a card
                # A refusal needs the careful path: it records refusals apart.
                check_card(item.tx, card, terminal=terminal, online=not offline)
            own.sort(key=_order)
            plans.append(_decide(own, holder, cards, stored, network, rules, offline, trip_ids))
        except (_Careful, CardRefused):
            careful.extend(own)
    if not plans:
        return {}, sorted(careful, key=_order)
    try:
        done = _write(plans, holders, revenue_id, entry_ids, actor=actor, offline=offline)
    except (BulkError, InsufficientFunds):
        # A counter spent by another path, a trip closed meanwhile: start over carefully.
        db.session.rollback()
        return {}, sorted(careful + [d.item for p in plans for d in p.decisions], key=_order)
    return done, sorted(careful, key=_order)


def _order(item: TapItem) -> tuple[int, int]:
    return (item.tx.timestamp, item.index)


def _read(items: list[TapItem], network: Network, *, offline: bool) -> _State | None:
    """Everything the taps decide on, in one round trip; None if the network is stale."""
    numbers = sorted({i.tx.card_number for i in items})
    months = sorted({_month(_at(i.tx)) for i in items})
    lock = lock_card_wallets_step(numbers)
    cards_step = card_records_step(numbers)
    by_card = Step(_BY_CARD, {"numbers": numbers, "months": months})
    by_holder = Step(_BY_HOLDER, {"numbers": numbers})
    context = Step(_CONTEXT, {"network": NETWORK_ROW_ID, "owner": REVENUE_OWNER})
    # Ids for what the taps may create (one trip or one entry each at most): with them known
    # up front, every write goes in one run.
    trip_ids = new_ids_step("transit_trip", len(items))
    entry_ids = entry_ids_step(len(items))
    steps = [lock, cards_step, by_card, by_holder, context, trip_ids, entry_ids]
    # Uploads are often sent again; an online tap sent again fails its insert instead (the
    # careful path then answers it), so the common online tap skips this read.
    stored = Step(_STORED, {"numbers": numbers, "atcs": sorted({i.tx.atc for i in items})})
    if offline:
        steps.append(stored)
    # The wallets' locks come first: every read after them is current.
    run_bulk(*steps)
    token, revenue = context.rows[0]
    if token != network.token:
        return None
    cards = card_records(cards_step)
    holders = {
        c: _Holder(c, wallet, balance, None, None, {}, {}, {})
        for c, (wallet, balance) in locked_wallets(lock).items()
    }
    for kind, number, trip_id, label, at, amount, day in by_card.rows:
        holder = holders.get(cards[number].citizen_id)
        if holder is None:
            continue
        if kind == "trip":
            trip = _Trip(int(trip_id), holder.citizen_id, number, label, _utc(at), int(amount), day)
            holder.open_trips.setdefault(number, []).append(trip)
        elif kind == "pending":
            holder.pending.setdefault(number, []).append(_utc(at))
        else:
            holder.months[(number, label)] = int(amount)
    for kind, citizen_id, trip_id, group, valid_until in by_holder.rows:
        holder = holders.get(citizen_id)
        if holder is None:
            continue
        if kind == "due":
            holder.due_trip = int(trip_id)
        else:
            holder.concession = Concession(group, valid_until)
    answers = {(number, int(atc)): response for number, atc, response in stored.rows}
    revenue_id = int(revenue) if revenue is not None else None
    return cards, holders, answers, revenue_id, iter(new_ids(trip_ids)), new_ids(entry_ids)


def _decide(
    own: list[TapItem],
    holder: _Holder,
    cards: dict[str, CardRecord],
    stored: dict[tuple[str, int], str],
    network: Network,
    rules: FareRules,
    offline: bool,
    trip_ids: Iterator[int],
) -> _Plan:
    plan = _Plan()
    seen: dict[tuple[str, int], _Decision] = {}
    for item in own:
        tx, card = item.tx, cards[item.tx.card_number]
        key = (tx.card_number, tx.atc)
        earlier = stored.get(key)
        if earlier is not None:
            plan.decisions.append(_Decision(item, card, "replay", _answer(json.loads(earlier))))
            continue
        first = seen.get(key)
        if first is not None:  # the same tap twice in one upload
            plan.decisions.append(_Decision(item, card, "replay", first.body))
            continue
        at = _at(tx)
        if item.direction == "in":
            decision = _tap_in(item, card, holder, plan, rules, at, next(trip_ids))
        else:
            decision = _tap_out(item, card, holder, plan, network, rules, at, offline)
        seen[key] = decision
        plan.decisions.append(decision)
    return plan


def _answer(body: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    return lambda: body


def _tap_in(
    item: TapItem,
    card: CardRecord,
    holder: _Holder,
    plan: _Plan,
    rules: FareRules,
    at: datetime,
    trip_id: int,
) -> _Decision:
    number = card.card_number
    if holder.due_trip is not None:
        due = holder.due_trip
        return _Decision(
            item,
            card,
            "refused",
            lambda: _result("in", "refused", reason="PENALTY_DUE", trip_id=due),
        )
    if any(t > at for t in holder.pending.get(number, [])):
        raise _Careful  # an exit that arrived first pairs with this entry
    if any(t.entry_at < at for t in holder.open_trips.get(number, [])):
        raise _Careful  # entered before and never left: the penalty fare first
    minimum = rail_fare(0, rules=rules, at=at, month_spent_fen=0).total_fen
    balance = holder.balance
    if balance < minimum:
        return _Decision(
            item,
            card,
            "refused",
            lambda: _result(
                "in",
                "refused",
                reason="INSUFFICIENT_FUNDS",
                balance_fen=balance,
                minimum_fen=minimum,
            ),
        )
    trip = _Trip(
        trip_id, holder.citizen_id, number, item.stop_id, at, item.tx.atc, beijing_date(at), "new"
    )
    holder.open_trips.setdefault(number, []).append(trip)
    plan.new_trips.append(trip)
    return _Decision(
        item,
        card,
        "accepted",
        lambda: _result("in", "accepted", trip_id=trip.id, balance_fen=balance),
        trip=trip,
    )


def _tap_out(
    item: TapItem,
    card: CardRecord,
    holder: _Holder,
    plan: _Plan,
    network: Network,
    rules: FareRules,
    at: datetime,
    offline: bool,
) -> _Decision:
    number = card.card_number
    candidates = [t for t in holder.open_trips.get(number, []) if t.entry_at <= at]
    if not candidates:
        if offline:
            holder.pending.setdefault(number, []).append(at)
            return _Decision(
                item, card, "pending", lambda: _result("out", "pending", reason="NO_TAP_IN")
            )
        return _Decision(
            item, card, "refused", lambda: _result("out", "refused", reason="NO_TAP_IN")
        )
    trip = max(candidates, key=lambda t: t.entry_at)
    month_key = (number, _month(at))
    spent = holder.months.get(month_key, 0)
    journey = None
    try:
        journey = network.journey(trip.entry_stop, item.stop_id)
        concession = holder.concession if journey.kind == "bus" else None
        fare = fare_for_journey(
            journey,
            rules=rules,
            at=at,
            month_spent_fen=spent,
            entered_at=trip.entry_at,
            concession=concession,
        )
    except SameStop:
        # In and out at the same station: the minimum fare, as if the shortest ride.
        fare = rail_fare(0, rules=rules, at=at, month_spent_fen=spent, entered_at=trip.entry_at)
    except DomainError:
        raise _Careful from None  # no fare joins the stops: the careful path reports it
    if fare.total_fen > holder.balance:
        balance = holder.balance
        return _Decision(
            item,
            card,
            "refused",
            lambda: _result(
                "out",
                "refused",
                reason="INSUFFICIENT_FUNDS",
                trip_id=trip.id,
                fare_fen=fare.total_fen,
                balance_fen=balance,
            ),
            trip=trip,
        )
    holder.balance -= fare.total_fen
    balance = holder.balance
    holder.months[month_key] = spent + fare.counts_toward_month_fen
    plan.months[month_key] = plan.months.get(month_key, 0) + fare.counts_toward_month_fen
    holder.open_trips[number].remove(trip)
    trip.status = "closed"
    trip.exit_stop, trip.exit_at, trip.exit_atc = item.stop_id, at, item.tx.atc
    trip.journey_kind = journey.kind if journey else "rail"
    trip.route_id = journey.route_id if journey else None
    trip.fare = fare
    plan.closed.append(trip)
    return _Decision(
        item,
        card,
        "accepted",
        lambda: _result("out", "accepted", **trip.breakdown(), balance_fen=balance),
        trip=trip,
    )


def _write(
    plans: list[_Plan],
    holders: dict[int, _Holder],
    revenue_id: int | None,
    entry_ids: list[int],
    *,
    actor: Actor,
    offline: bool,
) -> dict[int, TapOutcome]:
    paid = [t for p in plans for t in p.closed if t.fare is not None and t.fare.total_fen > 0]
    entries: list[NewEntry] = []
    if paid and revenue_id is None:
        revenue_id = get_account("revenue", REVENUE_OWNER, allow_negative=True).id
    for trip in paid:
        assert trip.fare is not None and revenue_id is not None
        trip.entry = entry_ids[len(entries)]
        entries.append(
            NewEntry(
                "fare",
                (
                    (holders[trip.citizen_id].wallet_id, -trip.fare.total_fen, True),
                    (revenue_id, trip.fare.total_fen, False),
                ),
                memo=f"trip {trip.id}",
                reference=f"transit:trip:{trip.id}",
            )
        )
    heads, postings, moves = entry_steps(entries, entry_ids, actor=actor)
    new_trips = []
    trip_updates: list[dict[str, Any]] = []
    for plan in plans:
        for trip in plan.new_trips:
            new_trips.append({**trip.row(), "ledger_entry_id": trip.entry})
        for trip in plan.closed:
            if trip.was == "open":
                trip_updates.append({**trip.row(), "was": "open", "ledger_entry_id": trip.entry})
    updates = Step(_UPDATE_TRIPS, trip_updates)
    months = [
        {"card_number": number, "month": month, "spent_fen": amount}
        for plan in plans
        for (number, month), amount in sorted(plan.months.items())
    ]
    done: dict[int, TapOutcome] = {}
    taps = []
    spent: list[tuple[CardRecord, SignedTransaction]] = []
    purposes: list[str] = []
    for plan in plans:
        for d in plan.decisions:
            body = d.body()
            if d.outcome == "replay":
                done[d.item.index] = TapOutcome(body, replayed=True)
                continue
            done[d.item.index] = TapOutcome(body)
            spent.append((d.card, d.item.tx))
            purposes.append(f"transit.tap_{d.item.direction}")
            taps.append(
                {
                    "card_number": d.item.tx.card_number,
                    "atc": d.item.tx.atc,
                    "direction": d.item.direction,
                    "stop_id": d.item.stop_id,
                    "terminal_id": d.item.tx.terminal_id,
                    "tapped_at": _at(d.item.tx),
                    "offline": offline,
                    "outcome": d.outcome,
                    "trip_id": d.trip.id if d.trip else None,
                    "response": json.dumps(body, ensure_ascii=False),
                }
            )
    run_bulk(
        Step(_INSERT_TRIPS, new_trips),
        heads,
        postings,
        moves,
        updates,
        Step(_ADD_MONTH, months),
        Step(_INSERT_TAPS, taps),
        *spend_steps(spent, actor=actor, online=not offline, purpose=purposes),
    )
    check_moves(moves)
    if len(updates.rows) != len(trip_updates):
        raise BulkError("a trip changed while its taps were decided")
    return done
