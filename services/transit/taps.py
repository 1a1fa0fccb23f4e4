"""Gate taps: trips, fares charged to the wallet, repeated and offline taps, close of day.

A tap is idempotent on the card's (card number, ATC): a repeated tap gets the first answer.
Tap-out prices the trip and debits the wallet in the same transaction as the trip record.
Offline gates upload taps later; a tap-out that arrives before its tap-in waits ("pending")
and is paired when the tap-in arrives.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger
from sqlalchemy import Boolean
from sqlalchemy import Date
from sqlalchemy import DateTime
from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy import UniqueConstraint
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy import update
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from citizen_card.public import Actor
from citizen_card.public import Base
from citizen_card.public import InsufficientFunds
from citizen_card.public import Leg
from citizen_card.public import SignedTransaction
from citizen_card.public import balance
from citizen_card.public import db
from citizen_card.public import get_account
from citizen_card.public import lock_wallets_step
from citizen_card.public import post_entry
from citizen_card.public import record_audit
from citizen_card.public import run_bulk
from citizen_card.public import verify_card_transaction
from citizen_card.public import wallet_of
from services.transit.fares import Concession
from services.transit.fares import FareBreakdown
from services.transit.fares import SameStop
from services.transit.fares import active_rules
from services.transit.fares import beijing_date
from services.transit.fares import beijing_month
from services.transit.fares import fare_for_journey
from services.transit.fares import max_fare_for
from services.transit.fares import rail_fare
from services.transit.network import Network
from services.transit.network import current_network

REVENUE_OWNER = "transit"


class TransitTrip(Base):
    """One ride: from tap-in to tap-out (or to the close-of-day penalty)."""

    __tablename__ = "transit_trip"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    citizen_id: Mapped[int] = mapped_column(ForeignKey("citizen.id"))
    card_number: Mapped[str] = mapped_column(String(19))
    status: Mapped[str] = mapped_column(String(16))  # open, closed, penalty, penalty_due
    entry_stop: Mapped[str] = mapped_column(String(64))
    entry_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    entry_atc: Mapped[int] = mapped_column(BigInteger)
    exit_stop: Mapped[str | None] = mapped_column(String(64))
    exit_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    exit_atc: Mapped[int | None] = mapped_column(BigInteger)
    journey_kind: Mapped[str | None] = mapped_column(String(8))
    route_id: Mapped[str | None] = mapped_column(String(64))
    distance_m: Mapped[int | None] = mapped_column(Integer)
    base_fen: Mapped[int] = mapped_column(Integer, default=0)
    # The share of the base fare paid, in thousandths (800 = 八折): an exact integer.
    discount_permille: Mapped[int] = mapped_column(Integer, default=1000)
    discount_fen: Mapped[int] = mapped_column(Integer, default=0)
    surcharge_fen: Mapped[int] = mapped_column(Integer, default=0)
    penalty_fen: Mapped[int] = mapped_column(Integer, default=0)
    fare_fen: Mapped[int] = mapped_column(Integer, default=0)
    ledger_entry_id: Mapped[int | None] = mapped_column(BigInteger)
    service_day: Mapped[date] = mapped_column(Date)

    __table_args__ = (
        Index("ix_transit_trip_card_status", "card_number", "status"),
        Index("ix_transit_trip_citizen", "citizen_id", "id"),
        # Every tap asks whether its holder owes a penalty: a lookup, not a walk over years
        # of the holder's trips.
        Index(
            "ix_transit_trip_penalty_due",
            "citizen_id",
            postgresql_where=text("status = 'penalty_due'"),
            sqlite_where=text("status = 'penalty_due'"),
        ),
    )


class TransitTap(Base):
    """A tap the gate sent, and the answer it got (replayed for a repeated tap)."""

    __tablename__ = "transit_tap"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    card_number: Mapped[str] = mapped_column(String(19))
    atc: Mapped[int] = mapped_column(BigInteger)
    direction: Mapped[str] = mapped_column(String(3))
    stop_id: Mapped[str] = mapped_column(String(64))
    terminal_id: Mapped[str] = mapped_column(String(64))
    tapped_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    offline: Mapped[bool] = mapped_column(Boolean)
    outcome: Mapped[str] = mapped_column(String(16))  # accepted, refused, pending
    trip_id: Mapped[int | None] = mapped_column(ForeignKey("transit_trip.id"))
    response: Mapped[str] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("card_number", "atc"),
        Index("ix_transit_tap_pending", "card_number", "outcome"),
    )


class TransitConcession(Base):
    """A resident's bus concession group (student, senior, disabled) and its last valid day.

    Recorded at a station from documents seen there; the fare rules say what each group pays.
    """

    __tablename__ = "transit_concession"

    citizen_id: Mapped[int] = mapped_column(ForeignKey("citizen.id"), primary_key=True)
    group: Mapped[str] = mapped_column(String(32))
    valid_until: Mapped[date] = mapped_column(Date)
    recorded_by: Mapped[str] = mapped_column(String(160))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TransitMonthSpend(Base):
    """A card's rail spend in one Beijing month (the discount tiers read it before a ride).

    Its row is locked by each tap-out of the card, which also serialises a card's tap-outs.
    """

    __tablename__ = "transit_month_spend"

    card_number: Mapped[str] = mapped_column(String(19), primary_key=True)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    spent_fen: Mapped[int] = mapped_column(Integer, default=0)


TRANSIT_REASONS = {
    "INSUFFICIENT_FUNDS": "余额不足",
    "NO_TAP_IN": "无进站记录",
    "PENALTY_DUE": "有未付的补票款",
    "UNKNOWN_STOP": "未知车站",
}


def _at(tx: SignedTransaction) -> datetime:
    return datetime.fromtimestamp(tx.timestamp, UTC)


def _utc(moment: datetime) -> datetime:
    # SQLite hands datetimes back naive; everything stored here is UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _month(at: datetime) -> str:
    year, month = beijing_month(at)
    return f"{year:04d}-{month:02d}"


def _result(tap: str, outcome: str, *, reason: str | None = None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"direction": tap, "result": outcome, "reason": reason}
    if reason is not None:
        body["reason_zh"] = TRANSIT_REASONS.get(reason)
    body.update(fields)
    return body


# How a priced trip stores its fare (no fare yet: the defaults of an open trip).
FARE_COLUMNS = (
    "distance_m",
    "base_fen",
    "discount_permille",
    "discount_fen",
    "surcharge_fen",
    "penalty_fen",
    "fare_fen",
)


def fare_columns(fare: FareBreakdown | None) -> dict[str, Any]:
    """A fare as the trip row keeps it; the careful and the bulk path both write this."""
    if fare is None:
        return dict(zip(FARE_COLUMNS, (None, 0, 1000, 0, 0, 0, 0), strict=True))
    return {
        "distance_m": fare.distance_m,
        "base_fen": fare.base_fen,
        # The share of the base fare paid, in thousandths: an exact integer.
        "discount_permille": int(fare.discount_rate * 1000),
        "discount_fen": fare.discount_fen,
        "surcharge_fen": fare.surcharge_fen,
        "penalty_fen": fare.penalty_fen,
        "fare_fen": fare.total_fen,
    }


def breakdown(trip_id: int, columns: dict[str, Any]) -> dict[str, Any]:
    """The fare breakdown a gate and a resident see, from the trip's fare columns."""
    body = {"trip_id": trip_id, **{c: columns[c] for c in FARE_COLUMNS}}
    body["discount_rate"] = str(Decimal(body.pop("discount_permille")) / 1000)
    return body


def _breakdown(trip: TransitTrip) -> dict[str, Any]:
    return breakdown(trip.id, {c: getattr(trip, c) for c in FARE_COLUMNS})


@dataclass(frozen=True)
class TapOutcome:
    """What the gate is told, and whether it was a replay of an earlier answer."""

    body: dict[str, Any]
    replayed: bool = False

    @property
    def accepted(self) -> bool:
        """True when the gate may open."""
        return self.body["result"] in ("accepted", "pending")


def tap(
    tx: SignedTransaction,
    *,
    direction: str,
    stop_id: str,
    actor: Actor,
    terminal: str,
    offline: bool = False,
) -> TapOutcome:
    """Process one tap; the caller commits. Raises CardRefused for the card's own reasons."""
    stored = db.session.scalars(
        select(TransitTap).where(TransitTap.card_number == tx.card_number, TransitTap.atc == tx.atc)
    ).first()
    if stored is not None:
        return TapOutcome(json.loads(stored.response), replayed=True)
    network = current_network()
    network.stop(stop_id)  # UnknownStop (404) before the card's counter is spent
    verified = verify_card_transaction(
        tx, actor=actor, terminal=terminal, online=not offline, purpose=f"transit.tap_{direction}"
    )
    at = _at(tx)
    # The wallet's lock first, as the bulk path takes it: one lock order, no deadlock.
    run_bulk(lock_wallets_step([verified.citizen_id]))
    if direction == "in":
        body, trip, outcome = _tap_in(verified.citizen_id, tx, stop_id, at, actor)
    else:
        body, trip, outcome = _tap_out(
            verified.citizen_id, tx, stop_id, at, actor, offline, network
        )
    db.session.add(
        TransitTap(
            card_number=tx.card_number,
            atc=tx.atc,
            direction=direction,
            stop_id=stop_id,
            terminal_id=tx.terminal_id,
            tapped_at=at,
            offline=offline,
            outcome=outcome,
            trip_id=trip.id if trip else None,
            response=json.dumps(body, ensure_ascii=False),
        )
    )
    db.session.flush()
    return TapOutcome(body)


def _tap_in(
    citizen_id: int, tx: SignedTransaction, stop_id: str, at: datetime, actor: Actor
) -> tuple[dict[str, Any], TransitTrip | None, str]:
    due = db.session.scalar(
        select(TransitTrip.id).where(
            TransitTrip.citizen_id == citizen_id, TransitTrip.status == "penalty_due"
        )
    )
    if due is not None:
        return _result("in", "refused", reason="PENALTY_DUE", trip_id=due), None, "refused"
    # An exit that arrived first (offline) pairs with this entry now.
    pending = db.session.scalars(
        select(TransitTap)
        .where(
            TransitTap.card_number == tx.card_number,
            TransitTap.outcome == "pending",
            TransitTap.tapped_at > at,
        )
        .order_by(TransitTap.tapped_at)
    ).first()
    for stale in db.session.scalars(
        select(TransitTrip).where(
            TransitTrip.card_number == tx.card_number,
            TransitTrip.status == "open",
            TransitTrip.entry_at < at,
        )
    ):
        _charge_penalty(stale, actor, at)  # entered before and never left: the penalty fare
    wallet: int | None = None
    if pending is None:
        # Refuse before writing anything: a refused gate leaves no trip behind.
        minimum = rail_fare(0, rules=active_rules(), at=at, month_spent_fen=0).total_fen
        wallet = balance(wallet_of(citizen_id))
        if wallet < minimum:
            body = _result(
                "in",
                "refused",
                reason="INSUFFICIENT_FUNDS",
                balance_fen=wallet,
                minimum_fen=minimum,
            )
            return body, None, "refused"
    trip = TransitTrip(
        citizen_id=citizen_id,
        card_number=tx.card_number,
        status="open",
        entry_stop=stop_id,
        entry_at=at,
        entry_atc=tx.atc,
        service_day=beijing_date(at),
    )
    db.session.add(trip)
    db.session.flush()
    if pending is None:
        return _result("in", "accepted", trip_id=trip.id, balance_fen=wallet), trip, "accepted"
    body = _close(trip, pending.stop_id, _utc(pending.tapped_at), pending.atc, actor)
    pending.outcome = "accepted" if body["result"] == "accepted" else "refused"
    pending.trip_id = trip.id
    pending.response = json.dumps(body, ensure_ascii=False)
    return _result("in", "accepted", trip_id=trip.id, paired_exit=body), trip, "accepted"


def _tap_out(
    citizen_id: int,
    tx: SignedTransaction,
    stop_id: str,
    at: datetime,
    actor: Actor,
    offline: bool,
    network: Network,
) -> tuple[dict[str, Any], TransitTrip | None, str]:
    # Lock the card's month row first: a card's tap-outs then run one at a time.
    month = _month_row(tx.card_number, _month(at))
    trip = db.session.scalars(
        select(TransitTrip)
        .where(
            TransitTrip.card_number == tx.card_number,
            TransitTrip.status == "open",
            TransitTrip.entry_at <= at,
        )
        .order_by(TransitTrip.entry_at.desc())
        .limit(1)
    ).first()
    if trip is None:
        if offline:
            return _result("out", "pending", reason="NO_TAP_IN"), None, "pending"
        return _result("out", "refused", reason="NO_TAP_IN"), None, "refused"
    body = _close(trip, stop_id, at, tx.atc, actor, month, network)
    return body, trip, "accepted" if body["result"] == "accepted" else "refused"


def _month_row(card_number: str, month: str) -> TransitMonthSpend:
    row = db.session.get(TransitMonthSpend, (card_number, month), with_for_update=True)
    if row is None:
        from sqlalchemy.exc import IntegrityError

        try:
            with db.session.begin_nested():
                db.session.add(TransitMonthSpend(card_number=card_number, month=month, spent_fen=0))
        except IntegrityError:
            pass
        row = db.session.get(
            TransitMonthSpend, (card_number, month), with_for_update=True, populate_existing=True
        )
        assert row is not None
    return row


def _close(
    trip: TransitTrip,
    stop_id: str,
    at: datetime,
    atc: int,
    actor: Actor,
    month: TransitMonthSpend | None = None,
    network: Network | None = None,
) -> dict[str, Any]:
    """Price the trip and debit the wallet in this transaction; refuse if it cannot pay."""
    network = network or current_network()
    rules = active_rules()
    month = month or _month_row(trip.card_number, _month(at))
    try:
        journey = network.journey(trip.entry_stop, stop_id)
        fare = fare_for_journey(
            journey,
            rules=rules,
            at=at,
            month_spent_fen=month.spent_fen,
            entered_at=_utc(trip.entry_at),
            concession=_concession(trip.citizen_id) if journey.kind == "bus" else None,
        )
    except SameStop:
        # In and out at the same station: the minimum fare, as if the shortest ride.
        fare = rail_fare(
            0, rules=rules, at=at, month_spent_fen=month.spent_fen, entered_at=_utc(trip.entry_at)
        )
        journey = None
    try:
        entry_id = _debit(trip, fare.total_fen, actor, f"trip {trip.id}")
    except InsufficientFunds as exc:
        return _result(
            "out",
            "refused",
            reason="INSUFFICIENT_FUNDS",
            trip_id=trip.id,
            fare_fen=fare.total_fen,
            balance_fen=exc.extensions.get("balance_fen"),
        )
    _apply(trip, fare, status="closed", entry_id=entry_id)
    trip.exit_stop, trip.exit_at, trip.exit_atc = stop_id, at, atc
    trip.journey_kind = journey.kind if journey else "rail"
    trip.route_id = journey.route_id if journey else None
    db.session.execute(
        update(TransitMonthSpend)
        .where(
            TransitMonthSpend.card_number == trip.card_number,
            TransitMonthSpend.month == month.month,
        )
        .values(spent_fen=TransitMonthSpend.spent_fen + fare.counts_toward_month_fen)
    )
    return _result(
        "out", "accepted", **_breakdown(trip), balance_fen=balance(wallet_of(trip.citizen_id))
    )


def _debit(trip: TransitTrip, amount_fen: int, actor: Actor, memo: str) -> int | None:
    if amount_fen == 0:
        return None  # free rides (concessions) move no money
    revenue = get_account("revenue", REVENUE_OWNER, allow_negative=True)
    entry = post_entry(
        "fare",
        [Leg(wallet_of(trip.citizen_id), -amount_fen), Leg(revenue, amount_fen)],
        actor=actor,
        memo=memo,
        reference=f"transit:trip:{trip.id}",
    )
    return int(entry.id)


def _apply(trip: TransitTrip, fare: FareBreakdown, *, status: str, entry_id: int | None) -> None:
    trip.status = status
    for column, value in fare_columns(fare).items():
        setattr(trip, column, value)
    trip.ledger_entry_id = entry_id


def _charge_penalty(trip: TransitTrip, actor: Actor, at: datetime) -> bool:
    """No tap-out: charge the maximum fare from the entry station (or record it as due).

    False when a tap-out closed the trip first: its wallet's lock is taken before the trip is
    read again, so a tap-out and the close of day never both charge one trip.
    """
    run_bulk(lock_wallets_step([trip.citizen_id]))
    db.session.refresh(trip)
    if trip.status != "open":
        return False
    fare = max_fare_for(trip.entry_stop, network=current_network(), rules=active_rules(), at=at)
    try:
        entry_id = _debit(trip, fare.total_fen, actor, f"penalty, trip {trip.id}")
        _apply(trip, fare, status="penalty", entry_id=entry_id)
    except InsufficientFunds:
        _apply(trip, fare, status="penalty_due", entry_id=None)
    record_audit(
        "transit.penalty",
        actor=actor,
        citizen_id=trip.citizen_id,
        subject=f"trip:{trip.id}",
        details={"fare_fen": fare.total_fen, "status": trip.status},
    )
    return True


def close_day(service_day: date, *, actor: Actor) -> tuple[int, int]:
    """Charge the penalty fare for every trip of that service day still open; (charged, due)."""
    charged = due = 0
    end = datetime.combine(service_day + timedelta(days=1), datetime.min.time(), UTC)
    for trip in db.session.scalars(
        select(TransitTrip).where(
            TransitTrip.status == "open", TransitTrip.service_day <= service_day
        )
    ):
        if not _charge_penalty(trip, actor, min(end, datetime.now(UTC))):
            continue
        if trip.status == "penalty":
            charged += 1
        else:
            due += 1
    db.session.commit()
    return charged, due


def trips_of(citizen_id: int, *, limit: int = 50) -> list[TransitTrip]:
    """A citizen's trips, newest first."""
    return list(
        db.session.scalars(
            select(TransitTrip)
            .where(TransitTrip.citizen_id == citizen_id)
            .order_by(TransitTrip.id.desc())
            .limit(limit)
        )
    )


def month_spent(card_number: str, at: datetime) -> int:
    """The card's rail spend this Beijing month (for quotes and the discount progress)."""
    row = db.session.get(TransitMonthSpend, (card_number, _month(at)))
    return row.spent_fen if row else 0


def cards_of(citizen_id: int) -> list[str]:
    """The cards a citizen has ridden with, most recent first."""
    rows = db.session.execute(
        select(TransitTrip.card_number, TransitTrip.id)
        .where(TransitTrip.citizen_id == citizen_id)
        .order_by(TransitTrip.id.desc())
    )
    seen: list[str] = []
    for number, _id in rows:
        if number not in seen:
            seen.append(number)
    return seen


def _concession(citizen_id: int) -> Concession | None:
    row = db.session.get(TransitConcession, citizen_id)
    return Concession(row.group, row.valid_until) if row else None


def record_concession(
    citizen_id: int, group: str, valid_until: date, *, actor: Actor
) -> TransitConcession:
    """Record (or replace) a resident's concession group; the group must exist in the rules."""
    from services.transit.fares import UnknownConcession

    rule_set = active_rules().in_force(datetime.now(UTC))
    if group not in rule_set.bus.concessions:
        raise UnknownConcession(
            f"no concession group {group!r} in the fare rules",
            groups=sorted(rule_set.bus.concessions),
        )
    row = db.session.get(TransitConcession, citizen_id)
    if row is None:
        row = TransitConcession(citizen_id=citizen_id)
        db.session.add(row)
    row.group, row.valid_until = group, valid_until
    row.recorded_by, row.recorded_at = f"{actor.type}:{actor.id}", datetime.now(UTC)
    record_audit(
        "transit.concession",
        actor=actor,
        citizen_id=citizen_id,
        details={"group": group, "valid_until": valid_until.isoformat()},
    )
    db.session.commit()
    return row
