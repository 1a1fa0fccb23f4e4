"""Schemas of the test service."""

from __future__ import annotations

import marshmallow as ma


class GreetingCreateSchema(ma.Schema):
    """A greeting to leave."""

    text = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=200))


class GreetingSchema(ma.Schema):
    """A stored greeting."""

    id = ma.fields.Integer()
    text = ma.fields.String()
