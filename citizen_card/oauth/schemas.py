"""Schemas of the client administration API."""

from __future__ import annotations

import marshmallow as ma

from citizen_card.oauth.models import AUTH_METHODS
from citizen_card.oauth.models import CLIENT_KINDS
from citizen_card.oauth.models import GRANT_TYPES


class ClientCreateSchema(ma.Schema):
    """A client to register."""

    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=200))
    kind = ma.fields.String(required=True, validate=ma.validate.OneOf(CLIENT_KINDS))
    organisation = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=200))
    scopes = ma.fields.List(ma.fields.String(), required=True)
    grant_types = ma.fields.List(ma.fields.String(validate=ma.validate.OneOf(GRANT_TYPES)))
    auth_method = ma.fields.String(validate=ma.validate.OneOf(AUTH_METHODS))
    jwks = ma.fields.Dict()
    redirect_uris = ma.fields.List(ma.fields.String())
    site = ma.fields.String(validate=ma.validate.Length(max=64))
    valid_days = ma.fields.Integer(validate=ma.validate.Range(min=1, max=1095))


class ClientSchema(ma.Schema):
    """A registered client (never its secret)."""

    client_id = ma.fields.String()
    name = ma.fields.String()
    kind = ma.fields.String()
    organisation = ma.fields.String()
    grant_types = ma.fields.Function(lambda c: c.grant_types.split())
    scopes = ma.fields.Function(lambda c: c.scopes.split())
    redirect_uris = ma.fields.Function(lambda c: c.redirect_uris.split())
    auth_method = ma.fields.String()
    site = ma.fields.String()
    status = ma.fields.String()
    expires_at = ma.fields.DateTime()
    created_at = ma.fields.DateTime()


class ClientWithSecretSchema(ClientSchema):
    """A client right after creation or rotation: the only time its secret is shown."""

    client_secret = ma.fields.String()


class ClientQueryArgsSchema(ma.Schema):
    """Filters for the client list."""

    kind = ma.fields.String(validate=ma.validate.OneOf(CLIENT_KINDS))


class StatusChangeSchema(ma.Schema):
    """Why a client is suspended or reactivated."""

    reason = ma.fields.String(required=True, validate=ma.validate.Length(min=3, max=256))


class PrincipalSchema(ma.Schema):
    """The caller of a request, from its verified access token."""

    kind = ma.fields.String(metadata={"description": "partner, terminal, station, resident, staff"})
    client_id = ma.fields.String()
    subject = ma.fields.String(metadata={"description": "the token's sub (pairwise for residents)"})
    organisation = ma.fields.String()
    scopes = ma.fields.Function(lambda p: sorted(p.scopes))
    role = ma.fields.String()
    station = ma.fields.String()
    site = ma.fields.String()
    expires_at = ma.fields.Integer()
