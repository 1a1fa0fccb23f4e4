"""OAuth endpoints (RFC 6749 bodies), key and metadata documents, and the client admin API."""

from __future__ import annotations

import base64
from typing import Any

from flask import Blueprint as FlaskBlueprint
from flask import Response
from flask import current_app
from flask import jsonify
from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint

from citizen_card.oauth import clients
from citizen_card.oauth import flows
from citizen_card.oauth.protect import current_principal
from citizen_card.oauth.protect import require_scopes
from citizen_card.oauth.schemas import ClientCreateSchema
from citizen_card.oauth.schemas import ClientQueryArgsSchema
from citizen_card.oauth.schemas import ClientSchema
from citizen_card.oauth.schemas import ClientWithSecretSchema
from citizen_card.oauth.schemas import PrincipalSchema
from citizen_card.oauth.schemas import StatusChangeSchema
from citizen_card.oauth.server import server
from citizen_card.oauth.tokens import audience
from citizen_card.oauth.tokens import issuer
from citizen_card.oauth.tokens import signing_keys

oauth_blp = FlaskBlueprint("oauth", __name__, template_folder="templates")
# The residents' and staff's browser routes and UserInfo (flows.py) share this blueprint so their
# endpoints read "oauth.authorize", "oauth.userinfo" (which metadata() below looks for).
flows.add_routes(oauth_blp)
admin_blp = Blueprint(
    "admin_clients",
    __name__,
    url_prefix="/api/v1/admin/clients",
    description="Partner, terminal and station clients (scope admin:clients)",
)


def _bad_basic_header() -> Response | None:
    # Authlib raises (a 500) on Basic credentials that are not base64 UTF-8; answer as
    # RFC 6749 §5.2 says instead.
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        decoded = ""
    if ":" in decoded:
        return None
    response = jsonify(error="invalid_client", error_description="malformed Basic credentials")
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Basic realm="citizen-card"'
    return response


@oauth_blp.post("/oauth/token")
def token() -> Response:
    """Token endpoint (RFC 6749 §3.2)."""
    response: Response = _bad_basic_header() or server().create_token_response()
    return response


@oauth_blp.post("/oauth/revoke")
def revoke() -> Response:
    """Token revocation (RFC 7009)."""
    response: Response = _bad_basic_header() or server().create_endpoint_response("revocation")
    return response


@oauth_blp.post("/oauth/introspect")
def introspect() -> Response:
    """Token introspection (RFC 7662)."""
    response: Response = _bad_basic_header() or server().create_endpoint_response("introspection")
    return response


@oauth_blp.get("/oauth/jwks")
def jwks() -> Response:
    """The public keys that verify our access tokens."""
    response = jsonify(signing_keys().jwks())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


def metadata() -> dict[str, Any]:
    """RFC 8414 / OIDC Discovery metadata for what this server actually offers."""
    base = issuer()
    endpoints = current_app.view_functions
    doc: dict[str, Any] = {
        "issuer": base,
        "token_endpoint": base + "/oauth/token",
        "jwks_uri": base + "/oauth/jwks",
        "revocation_endpoint": base + "/oauth/revoke",
        "introspection_endpoint": base + "/oauth/introspect",
        "scopes_supported": current_app.config["OAUTH2_SCOPES_SUPPORTED"],
        "grant_types_supported": ["client_credentials"],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["ES256"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
        "service_documentation": base + "/api/docs",
        "ui_locales_supported": ["zh-CN", "en"],
        "resource": audience(),
    }
    if "oauth.authorize" in endpoints:
        doc.update(
            authorization_endpoint=base + "/oauth/authorize",
            response_types_supported=["code"],
            grant_types_supported=["authorization_code", "refresh_token", "client_credentials"],
            # Public apps (no secret) use the code flow with PKCE.
            token_endpoint_auth_methods_supported=[
                "client_secret_basic",
                "private_key_jwt",
                "none",
            ],
            code_challenge_methods_supported=["S256"],
            subject_types_supported=["pairwise"],
            id_token_signing_alg_values_supported=["ES256"],
        )
    if "oauth.userinfo" in endpoints:
        doc["userinfo_endpoint"] = base + "/oauth/userinfo"
    return doc


@oauth_blp.get("/.well-known/oauth-authorization-server")
def as_metadata() -> Response:
    """RFC 8414 authorization server metadata."""
    return jsonify(metadata())


@oauth_blp.get("/.well-known/openid-configuration")
def oidc_metadata() -> Response:
    """OpenID Connect Discovery 1.0 metadata."""
    return jsonify(metadata())


me_blp = Blueprint("me", __name__, url_prefix="/api/v1/me", description="Who am I")


@me_blp.route("")
class Me(MethodView):
    """The caller, as its token proves it."""

    @require_scopes()
    @me_blp.response(200, PrincipalSchema)
    def get(self) -> Any:
        """Who the access token belongs to, and what it may do"""
        return current_principal()


class _WithSecret:
    """A client plus the secret to show once, for ClientWithSecretSchema."""

    def __init__(self, client: Any, secret: str | None) -> None:
        self._client = client
        self.client_secret = secret

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@admin_blp.route("")
class Clients(MethodView):
    """The client registry."""

    @require_scopes("admin:clients")
    @admin_blp.arguments(ClientQueryArgsSchema(), location="query")
    @admin_blp.response(200, ClientSchema(many=True))
    def get(self, args: dict[str, Any]) -> Any:
        """List clients"""
        return clients.list_clients(kind=args.get("kind"))

    @require_scopes("admin:clients")
    @admin_blp.arguments(ClientCreateSchema())
    @admin_blp.response(201, ClientWithSecretSchema)
    def post(self, data: dict[str, Any]) -> Any:
        """Register a client; its secret is in this response only"""
        client, secret = clients.create_client(actor=current_principal().actor, **data)
        return _WithSecret(client, secret)


@admin_blp.route("/<client_id>/suspend")
class SuspendClient(MethodView):
    """Suspension."""

    @require_scopes("admin:clients")
    @admin_blp.arguments(StatusChangeSchema())
    @admin_blp.response(200, ClientSchema)
    def post(self, data: dict[str, Any], client_id: str) -> Any:
        """Suspend a client: its tokens stop working"""
        return clients.set_client_status(
            client_id, "suspended", actor=current_principal().actor, reason=data["reason"]
        )


@admin_blp.route("/<client_id>/activate")
class ActivateClient(MethodView):
    """Reactivation."""

    @require_scopes("admin:clients")
    @admin_blp.arguments(StatusChangeSchema())
    @admin_blp.response(200, ClientSchema)
    def post(self, data: dict[str, Any], client_id: str) -> Any:
        """Reactivate a suspended client"""
        return clients.set_client_status(
            client_id, "active", actor=current_principal().actor, reason=data["reason"]
        )


@admin_blp.route("/<client_id>/rotate-secret")
class RotateSecret(MethodView):
    """Secret rotation."""

    @require_scopes("admin:clients")
    @admin_blp.response(200, ClientWithSecretSchema)
    def post(self, client_id: str) -> Any:
        """Replace a client's secret; the new one is in this response only"""
        client, secret = clients.rotate_secret(client_id, actor=current_principal().actor)
        return _WithSecret(client, secret)
