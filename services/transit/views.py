"""Routes of the transit service under /api/v1/transit: fares, taps, trips."""

from __future__ import annotations

from datetime import UTC
from datetime import datetime
from typing import Any

import marshmallow as ma
from flask import jsonify
from flask import request
from flask.views import MethodView

from citizen_card.public import Blueprint
from citizen_card.public import CardRefused
from citizen_card.public import DomainError
from citizen_card.public import NotFound
from citizen_card.public import SignedTransaction
from citizen_card.public import current_principal
from citizen_card.public import db
from citizen_card.public import documented
from citizen_card.public import parse_arguments
from citizen_card.public import require_scopes
from services.transit import fares
from services.transit import taps
from services.transit.ingest import TapItem
from services.transit.ingest import ingest
from services.transit.schemas import BatchResultSchema
from services.transit.schemas import ConcessionSchema
from services.transit.schemas import TapBatchSchema
from services.transit.schemas import TapResultSchema
from services.transit.schemas import TapSchema
from services.transit.schemas import TripArgsSchema
from services.transit.schemas import TripSchema

blp = Blueprint(
    "transit",
    __name__,
    description="Beijing public transport: fares on the imported network (docs/transit-fares.md).",
)

_STOP_ID = ma.validate.Length(min=1, max=64)


# The quote's schemas live here until the service has a schemas.py.
class FareQuoteArgsSchema(ma.Schema):
    """Which journey to quote."""

    from_stop = ma.fields.String(
        required=True,
        data_key="from",
        validate=_STOP_ID,
        metadata={"description": "GTFS stop_id of the origin; a station stands for its platforms"},
    )
    to_stop = ma.fields.String(
        required=True,
        data_key="to",
        validate=_STOP_ID,
        metadata={"description": "GTFS stop_id of the destination"},
    )
    at = ma.fields.AwareDateTime(
        metadata={"description": "When the ride would be charged (default: now); picks the rules"}
    )
    concession = ma.fields.String(
        validate=ma.validate.Length(min=1, max=32),
        metadata={"description": "Bus concession group, e.g. student (assumed valid)"},
    )
    card = ma.fields.String(
        validate=ma.validate.Regexp(r"^[0-9]{19}$"),
        metadata={
            "description": "Quote with this card's monthly discount (residents: their "
            "own card; a resident's token without it uses the card they ride with)"
        },
    )


class FareBreakdownSchema(ma.Schema):
    """How the fare is made up; amounts in integer fen."""

    kind = ma.fields.String(metadata={"description": "rail, flat or bus"})
    distance_m = ma.fields.Integer()
    base_fen = ma.fields.Integer()
    discount_rate = ma.fields.Decimal(
        as_string=True, metadata={"description": "Share of the base fare paid: 0.80 = 八折"}
    )
    discount_fen = ma.fields.Integer()
    surcharge_fen = ma.fields.Integer()
    penalty_fen = ma.fields.Integer()
    total_fen = ma.fields.Integer()
    rule_set = ma.fields.String()
    counts_toward_month_fen = ma.fields.Integer()
    route_id = ma.fields.String(allow_none=True)
    concession = ma.fields.String(allow_none=True)


class DiscountProgressSchema(ma.Schema):
    """The monthly rail discount at the quoted spend."""

    spent_fen = ma.fields.Integer()
    rate = ma.fields.Decimal(as_string=True)
    next_threshold_fen = ma.fields.Integer(allow_none=True)
    next_rate = ma.fields.Decimal(as_string=True, allow_none=True)
    remaining_fen = ma.fields.Integer(allow_none=True)
    rule_set = ma.fields.String()


class FareQuoteSchema(ma.Schema):
    """A fare between two stops."""

    from_stop_id = ma.fields.String()
    from_name = ma.fields.String()
    to_stop_id = ma.fields.String()
    to_name = ma.fields.String()
    kind = ma.fields.String(metadata={"description": "rail, flat (one-fare line) or bus"})
    route_id = ma.fields.String(allow_none=True)
    distance_m = ma.fields.Integer()
    fare_fen = ma.fields.Integer()
    path = ma.fields.List(ma.fields.String(), metadata={"description": "Stops on the way"})
    breakdown = ma.fields.Nested(FareBreakdownSchema)
    discount = ma.fields.Nested(DiscountProgressSchema, allow_none=True)


@blp.route("/fares")
class Fares(MethodView):
    """Fare quotes."""

    @require_scopes("transit:read")
    @blp.arguments(FareQuoteArgsSchema(), location="query")
    @blp.response(200, FareQuoteSchema)
    def get(self, args: dict[str, Any]) -> fares.FareQuote:
        """Quote the fare between two stops

        Rail fares use the shortest distance over the distance-based lines (changing lines
        is free, except onto the flat-fare Airport Express); buses the distance along one
        route. Unknown stops are 404; the same station twice, or stops no single fare
        joins, 422.
        """
        when = args.get("at") or datetime.now(UTC)
        card = _card_for_quote(args.get("card"))
        spent = taps.month_spent(card, when) if card else 0
        return fares.quote(
            args["from_stop"],
            args["to_stop"],
            at=when,
            month_spent_fen=spent,
            concession=args.get("concession"),
        )


class TripsNotFound(NotFound):
    """No such citizen's trips for this caller."""

    code = "TRIPS_NOT_FOUND"
    title = "Not found"
    title_zh = "未找到行程"
    service = "transit"


def _terminal() -> str:
    p = current_principal()
    return p.site or p.client_id


_TAP_SCHEMA = TapSchema()
_TX_FIELDS = {
    "card_number": str,
    "atc": int,
    "terminal_id": str,
    "unpredictable_number": str,
    "timestamp": int,
    "amount_fen": int,
    "pin_verified": bool,
    "signature": str,
}
_TAP_FIELDS = {*_TX_FIELDS, "direction", "stop_id"}


def _well_formed_tap(body: Any) -> tuple[SignedTransaction, str, str] | None:
    """A tap exactly as gates send it, read without marshmallow; None: let TapSchema judge.

    Accepts a strict subset of what TapSchema accepts (exact types, no extra fields) and
    builds the transaction with the same SignedTransaction.from_json the schema calls.
    """
    if type(body) is not dict or body.keys() != _TAP_FIELDS:
        return None
    if any(type(body[k]) is not kind for k, kind in _TX_FIELDS.items()):
        return None
    direction, stop_id = body["direction"], body["stop_id"]
    if direction not in ("in", "out") or type(stop_id) is not str or not 0 < len(stop_id) <= 64:
        return None
    try:
        tx = SignedTransaction.from_json({k: body[k] for k in _TX_FIELDS})
    except (ValueError, TypeError):  # TransactionFormatError is a ValueError
        return None
    return tx, direction, stop_id


@blp.route("/taps")
class Taps(MethodView):
    """Online gate taps."""

    @require_scopes("transit:tap", kinds=("terminal",))
    @documented(blp.arguments(_TAP_SCHEMA), blp.response(200, TapResultSchema))
    def post(self) -> Any:
        """A tap at a gate: in checks card and balance, out prices the trip and pays

        Transit decisions (insufficient funds, no tap-in) are `result: refused` with a
        `reason`; the card's own refusals (suspended, replayed, bad signature…) are 403
        problems with `reason`. A repeated tap (same card and ATC) gets the first answer.
        """
        # The gate's hot path: read by hand, answered as TapResultSchema's shape (tested).
        tap = _well_formed_tap(request.get_json(silent=True))
        if tap is None:
            data = parse_arguments(blp, _TAP_SCHEMA)
            tap = data["transaction"], data["direction"], data["stop_id"]
        tx, direction, stop_id = tap
        p = current_principal()
        item = TapItem(0, tx, direction, stop_id)
        done, _careful = ingest([item], actor=p.actor, terminal=_terminal(), offline=False)
        outcome = done.get(0) or taps.tap(
            tx, direction=direction, stop_id=stop_id, actor=p.actor, terminal=_terminal()
        )
        db.session.commit()
        return jsonify({**outcome.body, "replayed": outcome.replayed})


@blp.route("/taps:batch")
class TapBatch(MethodView):
    """Offline gates' uploads."""

    @require_scopes("transit:tap", kinds=("terminal",))
    @blp.arguments(TapBatchSchema())
    @blp.response(200, BatchResultSchema)
    def post(self, data: dict[str, Any]) -> Any:
        """Upload up to 1,000 offline taps; each gets its own result (idempotent)"""
        p = current_principal()
        items = [
            TapItem(index, tap["transaction"], tap["direction"], tap["stop_id"])
            for index, tap in enumerate(data["taps"])
        ]
        # Most taps are decided together in one transaction; the rest (card refusals,
        # penalties, exits to pair...) one at a time, in time order, after them.
        done, careful = ingest(items, actor=p.actor, terminal=_terminal(), offline=True)
        db.session.commit()
        results = {i: {**o.body, "replayed": o.replayed} for i, o in done.items()}
        for item in careful:
            try:
                outcome = taps.tap(
                    item.tx,
                    direction=item.direction,
                    stop_id=item.stop_id,
                    actor=p.actor,
                    terminal=_terminal(),
                    offline=True,
                )
                db.session.commit()
                results[item.index] = {**outcome.body, "replayed": outcome.replayed}
            except CardRefused as refused:
                results[item.index] = {
                    "direction": item.direction,
                    "result": "refused",
                    "reason": refused.reason,
                    "code": refused.code,
                }
            except DomainError as error:
                db.session.rollback()
                results[item.index] = {
                    "direction": item.direction,
                    "result": "error",
                    "code": error.code,
                    "detail": error.detail,
                }
        ordered = [{"index": i, **results[i]} for i in range(len(items))]
        count = {
            k: sum(1 for r in ordered if r["result"] == k)
            for k in ("accepted", "refused", "pending")
        }
        # Built to BatchResultSchema's shape already (a test holds it to that): dumping 1,000
        # items through marshmallow again cost a tenth of an upload.
        return jsonify({"results": ordered, **count})


@blp.route("/trips")
class Trips(MethodView):
    """Trips and their fares."""

    @require_scopes("transit:read")
    @blp.arguments(TripArgsSchema(), location="query")
    @blp.response(200, TripSchema(many=True))
    def get(self, args: dict[str, Any]) -> Any:
        """Trips, newest first: a resident's own, or a citizen's for stations and staff"""
        p = current_principal()
        if p.kind == "resident":
            citizen_id = p.citizen_id
        elif p.kind in ("station", "staff") and "citizen_id" in args:
            citizen_id = args["citizen_id"]
        else:
            raise TripsNotFound("residents see their own trips; stations name a citizen_id")
        assert citizen_id is not None
        return taps.trips_of(citizen_id, limit=args["limit"])


class CardNotYours(NotFound):
    """A resident asked about a card that is not theirs (or one never used on transit)."""

    code = "CARD_NOT_FOUND"
    title = "Card not found"
    title_zh = "卡片不存在"
    service = "transit"


class CardQuoteForbidden(DomainError):
    """Partners may not read a card's spending."""

    status = 403
    code = "FORBIDDEN"
    title = "Forbidden"
    title_zh = "权限不足"
    service = "transit"


def _card_for_quote(card: str | None) -> str | None:
    """Whose monthly spend the quote may use: a resident's own, or a card at a terminal."""
    p = current_principal()
    if p.kind == "resident":
        assert p.citizen_id is not None
        own = taps.cards_of(p.citizen_id)
        if card is None:
            return own[0] if own else None
        if card not in own:
            raise CardNotYours(f"no card {card} among yours")
        return card
    if card is not None and p.kind not in ("terminal", "station", "staff"):
        raise CardQuoteForbidden("a card's monthly spend is for its holder and for terminals")
    return card


@blp.route("/concessions/<int:citizen_id>")
class Concessions(MethodView):
    """Bus concessions, recorded at a station."""

    @require_scopes("transit:manage", kinds=("station", "staff"))
    @blp.arguments(ConcessionSchema())
    @blp.response(200, ConcessionSchema)
    def put(self, data: dict[str, Any], citizen_id: int) -> Any:
        """Record a resident's concession group (student, senior, disabled) and its expiry"""
        return taps.record_concession(
            citizen_id, data["group"], data["valid_until"], actor=current_principal().actor
        )
