"""The client registry: partners, terminals and stations; their secrets, keys and status.

Clients are read on every token request and every protected call, so each worker caches them
for ``OAUTH2_CACHE_SECONDS`` (1 s by default): a suspension is effective at once in the worker
that made it and within that time everywhere else.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select

from citizen_card.audit.actions import Actor
from citizen_card.audit.actions import record as audit
from citizen_card.errors import Conflict
from citizen_card.errors import DomainError
from citizen_card.errors import NotFound
from citizen_card.extensions import db
from citizen_card.oauth.models import AUTH_METHODS
from citizen_card.oauth.models import CLIENT_KINDS
from citizen_card.oauth.models import GRANT_TYPES
from citizen_card.oauth.models import OAuthClient


class InvalidClientRegistration(DomainError):
    """The client's registration data breaks a rule."""

    status = 422
    code = "INVALID_CLIENT_REGISTRATION"
    title = "Invalid client registration"
    title_zh = "客户端注册信息无效"


class ClientNotFound(NotFound):
    """No client with that id."""

    code = "CLIENT_NOT_FOUND"
    title = "Client not found"
    title_zh = "客户端不存在"


def hash_secret(secret: str) -> str:
    """SHA-256 of a client secret (secrets are 256-bit random, not passwords)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ClientView:
    """An immutable snapshot of a client row, safe to cache and share between threads.

    Implements what Authlib's server asks of a client.
    """

    client_id: str
    name: str
    kind: str
    organisation: str
    grant_types: tuple[str, ...]
    scopes: frozenset[str]
    redirect_uris: tuple[str, ...]
    auth_method: str
    secret_hash: str | None
    jwks: dict[str, Any] | None
    site: str | None
    status: str
    expires_at: datetime

    @property
    def usable(self) -> bool:
        """Active and not expired."""
        return self.status == "active" and self.expires_at > datetime.now(UTC)

    # -- Authlib ClientMixin ----------------------------------------------------------------
    def get_client_id(self) -> str:
        """The client_id."""
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        """The first registered redirect URI."""
        return self.redirect_uris[0] if self.redirect_uris else None

    def get_allowed_scope(self, scope: str | None) -> str:
        """The requested scopes this client may have (all of its scopes if none asked)."""
        if not scope:
            return " ".join(sorted(self.scopes))
        return " ".join(s for s in scope.split() if s in self.scopes)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        """Exact match only (no prefixes, no wildcards)."""
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        """Constant-time comparison of the secret's hash."""
        if not self.secret_hash:
            return False
        return hmac.compare_digest(self.secret_hash, hash_secret(client_secret))

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        """Each client authenticates one way, everywhere."""
        if method == "client_assertion_jwt":
            method = "private_key_jwt"
        return method == self.auth_method and self.usable

    def check_response_type(self, response_type: str) -> bool:
        """Only the code flow."""
        return response_type == "code" and "authorization_code" in self.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        """Grant types registered for this client."""
        return grant_type in self.grant_types and self.usable


def _view(row: OAuthClient) -> ClientView:
    expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
    return ClientView(
        client_id=row.client_id,
        name=row.name,
        kind=row.kind,
        organisation=row.organisation,
        grant_types=tuple(row.grant_types.split()),
        scopes=frozenset(row.scopes.split()),
        redirect_uris=tuple(u for u in row.redirect_uris.split() if u),
        auth_method=row.auth_method,
        secret_hash=row.secret_hash,
        jwks=json.loads(row.jwks) if row.jwks else None,
        site=row.site,
        status=row.status,
        expires_at=expires,
    )


class ClientCache:
    """client_id → ClientView (or None), each entry trusted for ttl seconds."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[float, ClientView | None]] = {}
        self._lock = threading.Lock()

    def get(self, client_id: str) -> ClientView | None:
        """The client, from the cache when fresh enough."""
        entry = self._entries.get(client_id)
        if entry is not None and time.monotonic() - entry[0] <= self.ttl:
            return entry[1]
        row = db.session.scalars(
            select(OAuthClient).where(OAuthClient.client_id == client_id)
        ).first()
        view = _view(row) if row is not None else None
        with self._lock:
            if len(self._entries) > 10000:
                self._entries.clear()
            self._entries[client_id] = (time.monotonic(), view)
        return view

    def forget(self, client_id: str) -> None:
        """Drop a client after a change made in this process."""
        self._entries.pop(client_id, None)


def client_cache() -> ClientCache:
    """The app's client cache."""
    cache: ClientCache = current_app.extensions["oauth_client_cache"]
    return cache


def get_client(client_id: str) -> ClientView | None:
    """A client by id (cached)."""
    return client_cache().get(client_id)


def client_is_usable(client_id: str) -> bool:
    """True when the client exists, is active and has not expired."""
    client = get_client(client_id)
    return client is not None and client.usable


# -- actions --------------------------------------------------------------------------------
def _validate_jwks(jwks: dict[str, Any]) -> str:
    from joserfc.errors import JoseError
    from joserfc.jwk import KeySet

    try:
        keys = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise InvalidClientRegistration(f"jwks is not a valid JWK set: {exc}") from exc
    for key in keys:
        if key.key_type != "EC" or key.get("crv") != "P-256":
            raise InvalidClientRegistration("terminal keys must be EC P-256 (ES256)")
        if key.is_private:
            raise InvalidClientRegistration("jwks must hold public keys only")
    return json.dumps({"keys": [k.as_dict(private=False) for k in keys]})


def create_client(
    *,
    name: str,
    kind: str,
    organisation: str,
    scopes: list[str],
    actor: Actor,
    grant_types: list[str] | None = None,
    auth_method: str | None = None,
    jwks: dict[str, Any] | None = None,
    redirect_uris: list[str] | None = None,
    site: str | None = None,
    valid_days: int = 365,
) -> tuple[OAuthClient, str | None]:
    """Register a client; return it and its secret (shown once, stored hashed)."""
    from citizen_card.oauth.scopes import known_scopes

    if kind not in CLIENT_KINDS:
        raise InvalidClientRegistration(f"kind must be one of {', '.join(CLIENT_KINDS)}")
    grant_types = grant_types or ["client_credentials"]
    bad = [g for g in grant_types if g not in GRANT_TYPES]
    if bad:
        raise InvalidClientRegistration(f"unknown grant types: {', '.join(bad)}")
    if auth_method is None:
        auth_method = "private_key_jwt" if jwks is not None else "client_secret_basic"
    if auth_method not in AUTH_METHODS:
        raise InvalidClientRegistration(f"auth method must be one of {', '.join(AUTH_METHODS)}")
    if kind == "terminal" and auth_method != "private_key_jwt":
        raise InvalidClientRegistration("terminals authenticate with private_key_jwt (--jwks)")
    if auth_method == "private_key_jwt" and not jwks:
        raise InvalidClientRegistration("private_key_jwt needs the client's public jwks")
    if (
        auth_method == "none"
        and grant_types != ["authorization_code", "refresh_token"][: len(grant_types)]
    ):
        raise InvalidClientRegistration(
            "public clients (auth method none) may only use the code flow"
        )
    unknown = sorted(set(scopes) - known_scopes(current_app))
    if unknown:
        raise InvalidClientRegistration(f"unknown scopes: {' '.join(unknown)}", unknown=unknown)
    uris = redirect_uris or []
    if "authorization_code" in grant_types:
        if not uris:
            raise InvalidClientRegistration("the code flow needs at least one redirect URI")
        for uri in uris:
            if (
                not (
                    uri.startswith("https://")
                    or uri.startswith("http://127.0.0.1")
                    or uri.startswith("http://localhost")
                )
                or "#" in uri
            ):
                raise InvalidClientRegistration(
                    f"redirect URI {uri!r} must be https (or http on loopback) without fragment"
                )
    if not 1 <= valid_days <= 3 * 365:
        raise InvalidClientRegistration("validity must be 1 to 1095 days (never forever)")
    now = datetime.now(UTC)
    secret = secrets.token_urlsafe(32) if auth_method == "client_secret_basic" else None
    client = OAuthClient(
        client_id=f"{kind[:4]}-{secrets.token_hex(8)}",
        name=name,
        kind=kind,
        organisation=organisation,
        grant_types=" ".join(grant_types),
        scopes=" ".join(sorted(set(scopes))),
        redirect_uris=" ".join(uris),
        auth_method=auth_method,
        secret_hash=hash_secret(secret) if secret else None,
        jwks=_validate_jwks(jwks) if jwks else None,
        site=site,
        status="active",
        expires_at=now + timedelta(days=valid_days),
        created_at=now,
        updated_at=now,
    )
    db.session.add(client)
    db.session.flush()
    audit(
        "oauth.client.create",
        actor=actor,
        subject=f"client:{client.client_id}",
        details={"kind": kind, "scopes": sorted(set(scopes)), "auth_method": auth_method},
    )
    db.session.commit()
    return client, secret


def _load(client_id: str) -> OAuthClient:
    row = db.session.scalars(select(OAuthClient).where(OAuthClient.client_id == client_id)).first()
    if row is None:
        raise ClientNotFound(f"no client {client_id!r}")
    return row


def list_clients(*, kind: str | None = None) -> list[OAuthClient]:
    """Every client, optionally of one kind."""
    query = select(OAuthClient).order_by(OAuthClient.id)
    if kind:
        query = query.where(OAuthClient.kind == kind)
    return list(db.session.scalars(query))


def set_client_status(client_id: str, status: str, *, actor: Actor, reason: str) -> OAuthClient:
    """Suspend or reactivate a client; its tokens stop (or resume) working at once here."""
    row = _load(client_id)
    if row.status == status:
        raise Conflict(f"client is already {status}", current_status=status)
    row.status = status
    row.updated_at = datetime.now(UTC)
    audit(
        f"oauth.client.{'suspend' if status == 'suspended' else 'activate'}",
        actor=actor,
        subject=f"client:{client_id}",
        purpose=reason,
    )
    db.session.commit()
    client_cache().forget(client_id)
    return row


def rotate_secret(client_id: str, *, actor: Actor) -> tuple[OAuthClient, str]:
    """Replace a client's secret; the old one stops working."""
    row = _load(client_id)
    if row.auth_method != "client_secret_basic":
        raise Conflict("this client authenticates without a secret", auth_method=row.auth_method)
    secret = secrets.token_urlsafe(32)
    row.secret_hash = hash_secret(secret)
    row.updated_at = datetime.now(UTC)
    audit("oauth.client.rotate_secret", actor=actor, subject=f"client:{client_id}")
    db.session.commit()
    client_cache().forget(client_id)
    return row, secret


def init_app(app: Any) -> None:
    """Set up the client cache."""
    app.extensions["oauth_client_cache"] = ClientCache(float(app.config["OAUTH2_CACHE_SECONDS"]))
