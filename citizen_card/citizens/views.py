"""The citizens registry API under /api/v1/citizens."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask import jsonify
from flask.views import MethodView
from flask_smorest import Blueprint

from citizen_card.citizens import actions
from citizen_card.citizens.schemas import CitizenCreateSchema
from citizen_card.citizens.schemas import CitizenQueryArgsSchema
from citizen_card.citizens.schemas import CitizenSchema
from citizen_card.citizens.schemas import CitizenUpdateSchema
from citizen_card.citizens.schemas import LifeEventSchema
from citizen_card.citizens.schemas import PurposeArgsSchema
from citizen_card.citizens.schemas import citizen_schema
from citizen_card.oauth.protect import current_principal
from citizen_card.oauth.protect import require_scopes

blp = Blueprint(
    "citizens",
    __name__,
    url_prefix="/api/v1/citizens",
    description="The citizens registry. Personal data is masked unless the token holds "
    "citizens:pii; partners must state a purpose, and every read is audited.",
)
_PII_NOTE = {"description": "CitizenSchema (masked); CitizenPiiSchema with scope citizens:pii"}


def _render(result: Any, pii: bool, status: int = 200, many: bool = False) -> Response:
    # The schema depends on the caller's scope, so the view dumps it itself.
    response = jsonify(citizen_schema(pii, many=many).dump(result))
    response.status_code = status
    return response


@blp.route("")
class Citizens(MethodView):
    """Search and registration."""

    @require_scopes("citizens:read")
    @blp.arguments(CitizenQueryArgsSchema(), location="query")
    @blp.response(200, CitizenSchema(many=True), **_PII_NOTE)
    def get(self, args: dict[str, Any]) -> Response:
        """Find citizens (national ID and phone match exactly)"""
        principal = current_principal()
        pii = principal.has("citizens:pii")
        found = actions.find_citizens(actor=principal.actor, pii=pii, **args)
        return _render(found, pii, many=True)

    @require_scopes("citizens:write")
    @blp.arguments(CitizenCreateSchema())
    @blp.response(201, CitizenSchema, **_PII_NOTE)
    def post(self, data: dict[str, Any]) -> Response:
        """Register a citizen"""
        principal = current_principal()
        citizen = actions.create_citizen(data, actor=principal.actor)
        return _render(citizen, principal.has("citizens:pii"), status=201)


@blp.route("/<int:citizen_id>")
class CitizenItem(MethodView):
    """One citizen."""

    @require_scopes("citizens:read")
    @blp.arguments(PurposeArgsSchema(), location="query")
    @blp.response(200, CitizenSchema, **_PII_NOTE)
    def get(self, args: dict[str, Any], citizen_id: int) -> Response:
        """Read a citizen"""
        principal = current_principal()
        pii = principal.has("citizens:pii")
        citizen = actions.get_citizen(
            citizen_id, actor=principal.actor, purpose=args.get("purpose"), pii=pii
        )
        return _render(citizen, pii)

    @require_scopes("citizens:write")
    @blp.arguments(CitizenUpdateSchema())
    @blp.response(200, CitizenSchema, **_PII_NOTE)
    def patch(self, data: dict[str, Any], citizen_id: int) -> Response:
        """Update a citizen (send the version you read)"""
        principal = current_principal()
        changes = dict(data)
        version = changes.pop("version")
        citizen = actions.update_citizen(
            citizen_id, changes, expected_version=version, actor=principal.actor
        )
        return _render(citizen, principal.has("citizens:pii"))


@blp.route("/<int:citizen_id>/life-events")
class LifeEvents(MethodView):
    """Deaths and moves away."""

    @require_scopes("citizens:write")
    @blp.arguments(LifeEventSchema())
    @blp.response(200, CitizenSchema, **_PII_NOTE)
    def post(self, data: dict[str, Any], citizen_id: int) -> Response:
        """Record that a citizen died or left the city"""
        principal = current_principal()
        citizen = actions.record_life_event(citizen_id, actor=principal.actor, **data)
        return _render(citizen, principal.has("citizens:pii"))
