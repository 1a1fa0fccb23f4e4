"""Authlib's authorization server, wired to our clients, token issuer and deny list.

Authlib does the RFC 6749 mechanics (request parsing, client authentication, grant dispatch,
RFC 6749 §5.2 error bodies); everything that decides who gets what lives in our modules.
"""

from __future__ import annotations

import time
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import InvalidScopeError
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from flask import Flask
from flask import current_app
from joserfc.jwk import KeySet
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from citizen_card.extensions import db
from citizen_card.oauth import refresh
from citizen_card.oauth import throttle
from citizen_card.oauth import tokens
from citizen_card.oauth.clients import ClientView
from citizen_card.oauth.clients import get_client
from citizen_card.oauth.models import UsedAssertion

PRIVATE_KEY_JWT = JWTBearerClientAssertion.CLIENT_AUTH_METHOD  # Authlib's internal name
CONFIDENTIAL_METHODS = ["client_secret_basic", PRIVATE_KEY_JWT]


def token_endpoint_url() -> str:
    """The absolute URL of /oauth/token, as client assertions must name it."""
    return tokens.issuer() + "/oauth/token"


class PrivateKeyJWT(JWTBearerClientAssertion):
    """RFC 7523 client authentication with the client's registered public keys."""

    def __init__(self) -> None:
        super().__init__(validate_jti=True, leeway=30)

    def get_audiences(self) -> list[str]:
        """The token endpoint, or the issuer itself (RFC 7523 §3 allows either)."""
        return [token_endpoint_url(), tokens.issuer()]

    def resolve_client_public_key(self, client: ClientView) -> KeySet:
        """The keys registered for the client (never keys named inside the assertion)."""
        return KeySet.import_key_set(client.jwks or {"keys": []})  # type: ignore[arg-type]

    def validate_jti(self, claims: dict[str, Any], jti: str) -> bool:
        """An assertion works once: its jti is recorded until it expires."""
        exp = int(claims.get("exp", 0))
        if exp - time.time() > 3600 + self.leeway:
            return False  # the replay record must outlive the assertion: keep both short
        try:
            with db.session.begin_nested():
                db.session.add(UsedAssertion(jti=jti, client_id=claims["sub"], expires_at=exp))
        except IntegrityError:
            return False
        db.session.commit()
        return True


class ScopedClientCredentialsGrant(ClientCredentialsGrant):
    """Client credentials, refusing scopes the client is not registered for."""

    TOKEN_ENDPOINT_AUTH_METHODS = CONFIDENTIAL_METHODS

    def validate_token_request(self) -> None:
        """Authenticate, then check every requested scope is the client's."""
        super().validate_token_request()
        requested = set((self.request.payload.scope or "").split())
        allowed = self.request.client.scopes
        if requested - allowed:
            raise InvalidScopeError(f"not registered for: {' '.join(sorted(requested - allowed))}")


def generate_token(
    grant_type: str,
    client: ClientView,
    user: Any = None,
    scope: str | None = None,
    expires_in: int | None = None,
    include_refresh_token: bool = True,
) -> dict[str, Any]:
    """Authlib's token generator hook: one call into our single token issuer."""
    scopes = (scope or "").split() or sorted(client.scopes)
    issued = tokens.issue_access_token(
        client_id=client.client_id,
        client_kind=client.kind,
        organisation=client.organisation,
        scopes=scopes,
        account=user,
        site=client.site,
    )
    return {
        "token_type": "Bearer",
        "access_token": issued.token,
        "expires_in": issued.expires_in,
        "scope": issued.claims["scope"],
    }


class _JwtToken:
    """A verified access token as Authlib's endpoints want to see it."""

    def __init__(self, claims: dict[str, Any]) -> None:
        self.claims = claims

    def check_client(self, client: ClientView) -> bool:
        return bool(self.claims.get("client_id") == client.client_id)

    def is_expired(self) -> bool:
        return bool(self.claims["exp"] <= time.time())

    def is_revoked(self) -> bool:
        # A suspended or expired client's tokens are as good as revoked.
        client = get_client(self.claims["client_id"])
        if client is None or not client.usable:
            return True
        return tokens.deny_list().contains(self.claims["jti"])


def _query_access_token(token_string: str) -> _JwtToken | None:
    try:
        return _JwtToken(tokens.decode_access_token(token_string, check_expiry=False))
    except tokens.TokenInvalid:
        return None


class Revocation(RevocationEndpoint):
    """RFC 7009: an access token's jti joins the deny list; a refresh token's family is revoked."""

    # Public apps (auth method "none") may revoke their own tokens too (RFC 7009 §2.1).
    CLIENT_AUTH_METHODS = [*CONFIDENTIAL_METHODS, "none"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
        """Find what the string is; unknown strings are silently accepted (RFC 7009 §2.2)."""
        found = None if token_type_hint == "refresh_token" else _query_access_token(token_string)
        return found or refresh.find(token_string)

    def revoke_token(self, token: Any, request: Any) -> None:
        """Deny the jti until the token would have expired, or revoke the refresh family."""
        from citizen_card.audit.actions import Actor
        from citizen_card.audit.actions import record

        if isinstance(token, refresh.RefreshHandle):
            refresh.revoke_family(
                token.family_id,
                reason="revoked by the client",
                actor=Actor("client", token.client_id),
            )
            db.session.commit()
            return
        tokens.revoke_access_token(token.claims)

        record(
            "oauth.token.revoke",
            actor=Actor("client", token.claims["client_id"]),
            subject=f"jti:{token.claims['jti']}",
        )
        db.session.commit()


class Introspection(IntrospectionEndpoint):
    """RFC 7662: a client may introspect its own tokens; resource servers any token."""

    CLIENT_AUTH_METHODS = CONFIDENTIAL_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
        """Verify the signature; expiry and revocation decide `active` later."""
        return _query_access_token(token_string)

    def check_permission(self, token: _JwtToken, client: ClientView, request: Any) -> bool:
        """Own tokens, or any token for resource servers holding `oauth:introspect`."""
        return token.check_client(client) or "oauth:introspect" in client.scopes

    def introspect_token(self, token: _JwtToken) -> dict[str, Any]:
        """RFC 7662 §2.2 response for a token we signed."""
        claims = token.claims
        active = (
            claims["exp"] > time.time()
            and not tokens.deny_list().contains(claims["jti"])
            and bool(get_client(claims["client_id"]) and get_client(claims["client_id"]).usable)  # type: ignore[union-attr]
        )
        if not active:
            return {"active": False}
        out = {
            k: claims[k] for k in ("scope", "client_id", "sub", "aud", "iss", "exp", "iat", "jti")
        }
        out.update(active=True, token_type="Bearer")
        return out


def purge_expired() -> int:
    """Drop deny-list and assertion records no token can still need; returns rows removed."""
    from citizen_card.oauth.models import RevokedToken

    now = int(time.time())
    removed = 0
    for model in (RevokedToken, UsedAssertion):
        result = db.session.execute(delete(model).where(model.expires_at < now))
        removed += int(getattr(result, "rowcount", 0) or 0)
    # Spent refresh tokens, old authorization codes, sign-in counters that no longer count.
    removed += refresh.purge() + throttle.purge()
    db.session.commit()
    return removed


def init_app(app: Flask) -> AuthorizationServer:
    """Build the server with our grants, client authentication and endpoints."""
    server = AuthorizationServer()
    server.init_app(app, query_client=get_client, save_token=lambda token, request: None)
    server.register_token_generator("default", generate_token)
    server.register_client_auth_method(PRIVATE_KEY_JWT, PrivateKeyJWT())
    server.register_grant(ScopedClientCredentialsGrant)
    from citizen_card.oauth import flows  # imports this module: only now, not at import

    flows.register(server)
    server.register_endpoint(Revocation)
    server.register_endpoint(Introspection)
    app.extensions["oauth_server"] = server
    return server


def server() -> AuthorizationServer:
    """The app's authorization server."""
    return current_app.extensions["oauth_server"]
