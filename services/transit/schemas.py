"""Schemas of the tap and trip APIs (the fare quote's schemas are in views.py)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma

from citizen_card.public import SignedTransactionSchema


class TapSchema(SignedTransactionSchema):
    """A gate tap: the card's signed transaction as it produced it, plus where and which way."""

    direction = ma.fields.String(required=True, validate=ma.validate.OneOf(("in", "out")))
    stop_id = ma.fields.String(
        required=True,
        validate=ma.validate.Length(min=1, max=64),
        metadata={"description": "GTFS stop id of the gate's station"},
    )

    @ma.post_load
    def _make(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        where = {"direction": data.pop("direction"), "stop_id": data.pop("stop_id")}
        return {"transaction": SignedTransactionSchema._make(self, data), **where}


class TapResultSchema(ma.Schema):
    """What the gate shows: accepted, refused (with a reason) or pending, and the fare."""

    direction = ma.fields.String()
    result = ma.fields.String(metadata={"description": "accepted, refused or pending"})
    reason = ma.fields.String(allow_none=True)
    reason_zh = ma.fields.String(allow_none=True)
    trip_id = ma.fields.Integer()
    distance_m = ma.fields.Integer(allow_none=True)
    base_fen = ma.fields.Integer()
    discount_rate = ma.fields.String()
    discount_fen = ma.fields.Integer()
    surcharge_fen = ma.fields.Integer()
    penalty_fen = ma.fields.Integer()
    fare_fen = ma.fields.Integer()
    balance_fen = ma.fields.Integer(allow_none=True)
    minimum_fen = ma.fields.Integer()
    replayed = ma.fields.Boolean()
    paired_exit = ma.fields.Dict()


class TapBatchSchema(ma.Schema):
    """An offline gate's upload."""

    taps = ma.fields.List(
        ma.fields.Nested(TapSchema), required=True, validate=ma.validate.Length(min=1, max=1000)
    )


class BatchItemResultSchema(TapResultSchema):
    """One item's result; card refusals and errors carry a code instead of a trip."""

    index = ma.fields.Integer()
    code = ma.fields.String()
    detail = ma.fields.String()


class BatchResultSchema(ma.Schema):
    """Every item's result, in the order sent."""

    results = ma.fields.List(ma.fields.Nested(BatchItemResultSchema))
    accepted = ma.fields.Integer()
    refused = ma.fields.Integer()
    pending = ma.fields.Integer()


class TripSchema(ma.Schema):
    """A trip and its fare breakdown."""

    id = ma.fields.Integer()
    card_number = ma.fields.String()
    status = ma.fields.String()
    entry_stop = ma.fields.String()
    entry_at = ma.fields.DateTime()
    exit_stop = ma.fields.String(allow_none=True)
    exit_at = ma.fields.DateTime(allow_none=True)
    journey_kind = ma.fields.String(allow_none=True)
    route_id = ma.fields.String(allow_none=True)
    distance_m = ma.fields.Integer(allow_none=True)
    base_fen = ma.fields.Integer()
    discount_rate = ma.fields.Function(lambda t: str(t.discount_permille / 1000))
    discount_fen = ma.fields.Integer()
    surcharge_fen = ma.fields.Integer()
    penalty_fen = ma.fields.Integer()
    fare_fen = ma.fields.Integer()


class TripArgsSchema(ma.Schema):
    """Whose trips (staff and stations name the citizen; residents see their own)."""

    citizen_id = ma.fields.Integer()
    limit = ma.fields.Integer(load_default=50, validate=ma.validate.Range(min=1, max=200))


class ConcessionSchema(ma.Schema):
    """A resident's bus concession group and the last day it applies (Beijing date)."""

    group = ma.fields.String(
        required=True,
        validate=ma.validate.Length(min=1, max=32),
        metadata={"description": "a group of the fare rules: student, senior, disabled"},
    )
    valid_until = ma.fields.Date(required=True)
