"""Schemas of the wallet API."""

from __future__ import annotations

import marshmallow as ma


class TopupSchema(ma.Schema):
    """A top-up: an amount in fen (integer) and the partner's own reference."""

    amount_fen = ma.fields.Integer(
        required=True, strict=True, metadata={"description": "integer fen (1 元 = 100)"}
    )
    reference = ma.fields.String(
        validate=ma.validate.Length(max=128),
        metadata={"description": "the partner's payment reference"},
    )


class TopupResultSchema(ma.Schema):
    """What a top-up did."""

    entry_id = ma.fields.Integer()
    amount_fen = ma.fields.Integer()
    balance_fen = ma.fields.Integer()


class WalletSchema(ma.Schema):
    """A wallet's balance."""

    citizen_id = ma.fields.Integer()
    balance_fen = ma.fields.Integer()


class StatementArgsSchema(ma.Schema):
    """Paging of a statement."""

    limit = ma.fields.Integer(load_default=50, validate=ma.validate.Range(min=1, max=200))
    before_entry = ma.fields.Integer(validate=ma.validate.Range(min=1))


class StatementLineSchema(ma.Schema):
    """One line of a statement."""

    entry_id = ma.fields.Integer()
    kind = ma.fields.String()
    amount_fen = ma.fields.Integer()
    memo = ma.fields.String(allow_none=True)
    reference = ma.fields.String(allow_none=True)
    created_at = ma.fields.DateTime()
