"""The one token issuer and the one access-token verifier.

Every way of authenticating — client credentials, a resident's login, staff login, and later
card + PIN at a terminal — ends in :func:`issue_access_token`; every protected request goes
through :func:`verify_access_token`. Access tokens are RFC 9068 JWTs signed ES256; nothing is
written per token. Revocation works through a ``jti`` deny list that each worker caches and
refreshes at most once a second (``OAUTH2_CACHE_SECONDS``).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Any

from flask import Flask
from flask import current_app
from sqlalchemy import select

from citizen_card.audit.actions import Actor
from citizen_card.extensions import db
from citizen_card.oauth import jose
from citizen_card.oauth.models import RevokedToken
from citizen_card.oauth.signing import SigningKeyring
from citizen_card.pii import DecryptionError
from citizen_card.pii import keyring

# Principal kinds carried in the token's "cc_kind" claim.
CLIENT_KINDS = ("partner", "terminal", "station")
USER_KINDS = ("resident", "staff")
_SUBJECT_CONTEXT = "oauth.token.subject"


class TokenInvalid(Exception):
    """The bearer token cannot be accepted; ``reason`` is safe to show the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Principal:
    """Who is calling, as proven by a verified access token."""

    kind: str
    client_id: str
    subject: str
    scopes: frozenset[str]
    jti: str
    expires_at: int
    organisation: str | None = None
    account_id: int | None = None
    citizen_id: int | None = None
    role: str | None = None
    station: str | None = None
    site: str | None = None

    @property
    def actor(self) -> Actor:
        """The audit actor for this principal."""
        if self.kind == "resident":
            return Actor("resident", f"account:{self.account_id}")
        if self.kind == "staff":
            return Actor("staff", f"account:{self.account_id}@{self.station or '-'}")
        if self.kind == "terminal":
            return Actor("terminal", self.client_id)
        return Actor("client", self.client_id)

    def has(self, *scopes: str) -> bool:
        """True when every scope is granted."""
        return set(scopes) <= self.scopes


@dataclass(frozen=True)
class IssuedToken:
    """An access token and what it says."""

    token: str
    expires_in: int
    claims: dict[str, Any]


def issuer() -> str:
    """This authorization server's issuer identifier."""
    return str(current_app.config["OAUTH2_ISSUER"]).rstrip("/")


def audience() -> str:
    """The audience every access token for our API carries."""
    return str(current_app.config.get("OAUTH2_AUDIENCE") or issuer() + "/api")


def signing_keys() -> SigningKeyring:
    """The app's signing keyring."""
    ring: SigningKeyring = current_app.extensions["oauth_signing"]
    return ring


def pairwise_subject(sector: str, account_id: int) -> str:
    """OIDC Core §8.1: a stable subject per (sector, account) that other sectors cannot link."""
    return keyring().blind_index(str(account_id), f"oauth.pairwise:{sector}")[:40]


def person_subject(organisation: str, account: Any) -> str:
    """A person's ``sub``: pairwise per organisation for residents, ``staff:<id>`` for staff."""
    if account.kind == "resident":
        return pairwise_subject(organisation, account.id)
    return f"staff:{account.id}"


def issue_access_token(
    *,
    client_id: str,
    client_kind: str,
    organisation: str,
    scopes: Iterable[str],
    account: Any | None = None,
    site: str | None = None,
    auth_time: int | None = None,
    lifetime: int | None = None,
) -> IssuedToken:
    """Sign an RFC 9068 access token for a client, or for a person through a client."""
    now = int(time.time())
    ttl = int(lifetime or current_app.config["OAUTH2_ACCESS_TOKEN_LIFETIME"])
    claims: dict[str, Any] = {
        "iss": issuer(),
        "aud": audience(),
        "iat": now,
        "exp": now + ttl,
        "jti": secrets.token_urlsafe(16),
        "client_id": client_id,
        "scope": " ".join(sorted(set(scopes))),
        "cc_org": organisation,
    }
    if account is None:
        claims["sub"] = client_id
        claims["cc_kind"] = client_kind
        if site:
            claims["cc_site"] = site
    else:
        claims["cc_kind"] = account.kind
        claims["sub"] = person_subject(organisation, account)
        if account.kind != "resident":
            claims["cc_role"] = account.role
            claims["cc_station"] = account.station
        # Our own services need the account; partners must not learn a linkable id, so
        # it travels encrypted (a fresh nonce per token: two tokens share nothing).
        private = json.dumps({"a": account.id, "c": account.citizen_id})
        claims["cc_subj"] = keyring().encrypt(private, _SUBJECT_CONTEXT)
        if auth_time is not None:
            claims["auth_time"] = auth_time
    key = signing_keys().active
    return IssuedToken(jose.sign(claims, key.private, key.kid), ttl, claims)


class DenyList:
    """Revoked jtis, cached per process and refreshed from the database at most every N s."""

    def __init__(self, refresh_seconds: float) -> None:
        self.refresh_seconds = refresh_seconds
        self._jtis: dict[str, int] = {}
        self._loaded_at = 0.0
        self._since: datetime | None = None
        self._lock = threading.Lock()

    def add_local(self, jti: str, expires_at: int) -> None:
        """Make a revocation effective in this process at once."""
        self._jtis[jti] = expires_at

    def contains(self, jti: str) -> bool:
        """True when jti is revoked (as of at most refresh_seconds ago, or now if local)."""
        if time.monotonic() - self._loaded_at > self.refresh_seconds:
            self._refresh()
        return jti in self._jtis

    def _refresh(self) -> None:
        with self._lock:
            if time.monotonic() - self._loaded_at <= self.refresh_seconds:
                return
            now = int(time.time())
            query = select(RevokedToken.jti, RevokedToken.expires_at).where(
                RevokedToken.expires_at > now
            )
            started = datetime.now(UTC)
            if self._since is not None:
                # Overlap generously: a revocation's timestamp precedes its commit.
                query = query.where(RevokedToken.revoked_at > self._since - timedelta(seconds=30))
            else:
                self._jtis.clear()
            for jti, exp in db.session.execute(query):
                self._jtis[jti] = exp
            for jti in [j for j, exp in self._jtis.items() if exp <= now]:
                del self._jtis[jti]
            self._since = started
            self._loaded_at = time.monotonic()


def deny_list() -> DenyList:
    """The app's deny list cache."""
    cache: DenyList = current_app.extensions["oauth_deny_list"]
    return cache


def revoke_access_token(claims: dict[str, Any]) -> None:
    """Put a token's jti on the deny list (caller commits)."""
    jti, exp = str(claims["jti"]), int(claims["exp"])
    if db.session.get(RevokedToken, jti) is None:
        db.session.add(RevokedToken(jti=jti, expires_at=exp, revoked_at=datetime.now(UTC)))
    deny_list().add_local(jti, exp)


class VerifiedTokens:
    """Tokens whose signature this worker has already checked, and their claims.

    A client reuses one token for its whole life (10 minutes), so the ECDSA check — the
    largest cost of a protected call — is done once per token per worker. Only the signature
    result is cached: issuer, audience, expiry, the deny list and the client's status are
    checked on every request.
    """

    def __init__(self, size: int = 20000) -> None:
        self.size = size
        self._claims: dict[str, dict[str, Any]] = {}

    def get(self, token: str) -> dict[str, Any] | None:
        """The claims of a token verified before, or None."""
        return self._claims.get(token)

    def put(self, token: str, claims: dict[str, Any]) -> None:
        """Remember a verified token (the cache is simply emptied when full)."""
        if len(self._claims) >= self.size:
            self._claims.clear()
        self._claims[token] = claims


def decode_access_token(token: str, *, check_expiry: bool = True) -> dict[str, Any]:
    """Verify signature, issuer, audience and lifetime; return the claims."""
    verified: VerifiedTokens = current_app.extensions["oauth_verified_tokens"]
    claims = verified.get(token)
    if claims is None:
        try:
            claims = jose.verify(token, signing_keys().verification_keys())
        except jose.JoseError as exc:
            raise TokenInvalid(str(exc)) from exc
        verified.put(token, claims)
    if claims.get("iss") != issuer():
        raise TokenInvalid("wrong issuer")
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if audience() not in audiences:
        raise TokenInvalid("token is not for this API (audience)")
    now = time.time()
    leeway = 30
    exp = claims.get("exp")
    if not isinstance(exp, int) or (check_expiry and exp < now - leeway):
        raise TokenInvalid("token expired")
    iat = claims.get("iat")
    if not isinstance(iat, int) or iat > now + leeway:
        raise TokenInvalid("token issued in the future")
    if not isinstance(claims.get("jti"), str) or not isinstance(claims.get("client_id"), str):
        raise TokenInvalid("token lacks jti or client_id")
    return claims


def verify_access_token(token: str) -> Principal:
    """The principal of a valid, unrevoked token whose client is still active."""
    from citizen_card.oauth.clients import client_is_usable

    claims = decode_access_token(token)
    if deny_list().contains(claims["jti"]):
        raise TokenInvalid("token revoked")
    if not client_is_usable(claims["client_id"]):
        raise TokenInvalid("client suspended or expired")
    account_id = citizen_id = None
    if "cc_subj" in claims:
        try:
            private = json.loads(keyring().decrypt(str(claims["cc_subj"]), _SUBJECT_CONTEXT))
        except (DecryptionError, ValueError) as exc:
            raise TokenInvalid("bad subject") from exc
        account_id, citizen_id = private["a"], private["c"]
    return Principal(
        kind=str(claims.get("cc_kind")),
        client_id=claims["client_id"],
        subject=str(claims.get("sub")),
        scopes=frozenset(str(claims.get("scope", "")).split()),
        jti=claims["jti"],
        expires_at=int(claims["exp"]),
        organisation=claims.get("cc_org"),
        account_id=account_id,
        citizen_id=citizen_id,
        role=claims.get("cc_role"),
        station=claims.get("cc_station"),
        site=claims.get("cc_site"),
    )


def init_app(app: Flask) -> None:
    """Load (in development: create) the signing keys; set up the deny-list cache."""
    create = app.config.get("ENV") != "production"
    app.extensions["oauth_signing"] = SigningKeyring(
        app.config["OAUTH2_SIGNING_KEYS_FILE"],
        create=create,
        token_lifetime=int(app.config["OAUTH2_ACCESS_TOKEN_LIFETIME"]),
    )
    app.extensions["oauth_deny_list"] = DenyList(float(app.config["OAUTH2_CACHE_SECONDS"]))
    app.extensions["oauth_verified_tokens"] = VerifiedTokens()
