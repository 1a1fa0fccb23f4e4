"""Routes of the test service."""

from __future__ import annotations

from flask.views import MethodView

from citizen_card.public import Blueprint
from citizen_card.public import current_principal
from citizen_card.public import require_scopes
from tests.plugins.hello_service import actions
from tests.plugins.hello_service.schemas import GreetingCreateSchema
from tests.plugins.hello_service.schemas import GreetingQueryArgsSchema
from tests.plugins.hello_service.schemas import GreetingSchema

blp = Blueprint("hello_service", __name__, description="Test service")


@blp.route("/greetings")
class Greetings(MethodView):
    """Greetings."""

    @require_scopes("hello_service:read")
    @blp.arguments(GreetingQueryArgsSchema(), location="query")
    @blp.response(200, GreetingSchema(many=True))
    def get(self, args):  # type: ignore[no-untyped-def]
        """List greetings"""
        return actions.list_greetings(phone=args.get("phone"))

    @require_scopes("hello_service:write")
    @blp.arguments(GreetingCreateSchema())
    @blp.response(201, GreetingSchema)
    def post(self, data):  # type: ignore[no-untyped-def]
        """Leave a greeting"""
        return actions.leave_greeting(
            data["text"], phone=data.get("phone"), actor=current_principal().actor
        )


@blp.route("/crash")
class Crash(MethodView):
    """A route that fails, to prove 500s are problem documents without internals."""

    @require_scopes("hello_service:read")
    def get(self):  # type: ignore[no-untyped-def]
        """Fail on purpose"""
        raise RuntimeError("secret internals: password=hunter2")
