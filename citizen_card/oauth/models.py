"""OAuth clients, accounts, consents, and the few token records that must be stateful.

Access tokens are signed JWTs and are NOT stored (no write per token); only what revocation,
refresh rotation and single-use codes need is kept.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger
from sqlalchemy import CheckConstraint
from sqlalchemy import DateTime
from sqlalchemy import ForeignKey
from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy import UniqueConstraint
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from citizen_card.db import Base

CLIENT_KINDS = ("partner", "terminal", "station")
AUTH_METHODS = ("client_secret_basic", "private_key_jwt", "none")
GRANT_TYPES = ("client_credentials", "authorization_code", "refresh_token")


class OAuthClient(Base):
    """A partner agency's system, a terminal (gate, clinic) or a community station."""

    __tablename__ = "oauth_client"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    organisation: Mapped[str] = mapped_column(String(200))
    # Space-separated, as OAuth writes them.
    grant_types: Mapped[str] = mapped_column(String(200))
    scopes: Mapped[str] = mapped_column(Text)
    redirect_uris: Mapped[str] = mapped_column(Text, default="")
    auth_method: Mapped[str] = mapped_column(String(32))
    # SHA-256 of a 256-bit random secret: a slow password hash buys nothing for random
    # secrets and would cap token throughput.
    secret_hash: Mapped[str | None] = mapped_column(String(64))
    jwks: Mapped[str | None] = mapped_column(Text)
    site: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="active")
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("kind IN ('partner', 'terminal', 'station')", name="kind_valid"),
        CheckConstraint(
            "auth_method IN ('client_secret_basic', 'private_key_jwt', 'none')",
            name="auth_method_valid",
        ),
        CheckConstraint("status IN ('active', 'suspended')", name="status_valid"),
    )


class RevokedToken(Base):
    """The deny list: revoked access tokens by jti, kept until they would have expired."""

    __tablename__ = "oauth_revoked_token"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)
    revoked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class RefreshToken(Base):
    """A refresh token (hashed). Each use spends it and issues the next one in its family."""

    __tablename__ = "oauth_refresh_token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    family_id: Mapped[str] = mapped_column(String(32), index=True)
    client_id: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"))
    scope: Mapped[str] = mapped_column(Text)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    spent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuthorizationCode(Base):
    """A single-use authorization code (hashed), bound to client, redirect URI and PKCE."""

    __tablename__ = "oauth_authorization_code"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"))
    redirect_uri: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(Text)
    nonce: Mapped[str | None] = mapped_column(String(255))
    code_challenge: Mapped[str] = mapped_column(String(128))
    code_challenge_method: Mapped[str] = mapped_column(String(8))
    auth_time: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The refresh family issued from this code, revoked if the code is replayed.
    family_id: Mapped[str | None] = mapped_column(String(32))


class Account(Base):
    """A person who logs in: a resident (tied to a citizen) or station staff."""

    __tablename__ = "account"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    # Residents log in with their national ID; staff with a username. Only an HMAC is kept.
    login_index: Mapped[str] = mapped_column(String(64), unique=True)
    citizen_id: Mapped[int | None] = mapped_column(ForeignKey("citizen.id"), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    password_set_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    role: Mapped[str | None] = mapped_column(String(16))
    station: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("kind IN ('resident', 'staff')", name="kind_valid"),
        CheckConstraint(
            "role IS NULL OR role IN ('clerk', 'supervisor', 'admin')", name="role_valid"
        ),
        CheckConstraint("status IN ('active', 'disabled')", name="status_valid"),
        CheckConstraint(
            "(kind = 'resident' AND citizen_id IS NOT NULL AND role IS NULL)"
            " OR (kind = 'staff' AND citizen_id IS NULL AND role IS NOT NULL)",
            name="kind_shape",
        ),
    )


class Consent(Base):
    """A resident's remembered consent to a client's scopes; withdrawable."""

    __tablename__ = "oauth_consent"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"))
    client_id: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[str] = mapped_column(Text)
    granted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    withdrawn_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (UniqueConstraint("account_id", "client_id"),)


class LoginThrottle(Base):
    """Failed-login counters per key (an account+address pair, an account, an address)."""

    __tablename__ = "oauth_login_throttle"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_started: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class UsedAssertion(Base):
    """Client assertion jtis already seen (RFC 7523 §3: an assertion is single-use)."""

    __tablename__ = "oauth_used_assertion"

    jti: Mapped[str] = mapped_column(String(255), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)
