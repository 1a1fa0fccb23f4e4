"""Schemas of the test service."""

from __future__ import annotations

import marshmallow as ma

from citizen_card.public import mask_phone


class GreetingCreateSchema(ma.Schema):
    """A greeting to leave."""

    text = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=200))
    phone = ma.fields.String(validate=ma.validate.Regexp(r"^1[3-9]\d{9}$"))


class GreetingSchema(ma.Schema):
    """A stored greeting."""

    id = ma.fields.Integer()
    text = ma.fields.String()
    phone = ma.fields.Function(lambda g: mask_phone(g.phone))


class GreetingQueryArgsSchema(ma.Schema):
    """Filters for the greeting list."""

    phone = ma.fields.String()
