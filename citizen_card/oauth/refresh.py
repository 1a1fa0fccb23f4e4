"""Refresh tokens: opaque, stored hashed, rotated on every use, revoked by family on reuse.

A refresh token is 256 random bits, given out once and kept only as its SHA-256 (a slow hash
adds nothing to a random value). Every token descends from one authorization code; all of
them share a ``family_id``. Using a token spends it and issues its successor in the family. A
spent token presented again means two parties hold the family, one of them a thief: the whole
family is revoked (RFC 9700 §4.14.2) and the user signs in again. The same happens when the
code the family came from is replayed (RFC 6749 §4.1.2).

Access tokens already issued from a revoked family are not tracked (they are JWTs, nothing is
stored per token) and live out their lifetime, at most ``OAUTH2_ACCESS_TOKEN_LIFETIME``.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import delete
from sqlalchemy import select
from sqlalchemy import update

from citizen_card.audit.actions import Actor
from citizen_card.audit.actions import record as audit
from citizen_card.extensions import db
from citizen_card.oauth.models import AuthorizationCode
from citizen_card.oauth.models import RefreshToken

SYSTEM = Actor.system("oauth")


def hash_token(token: str) -> str:
    """SHA-256 of a refresh token or authorization code (random values, not passwords)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_family() -> str:
    """A fresh family id (128 random bits, 32 hex characters)."""
    return secrets.token_hex(16)


def as_utc(moment: datetime) -> datetime:
    """An aware UTC datetime (SQLite hands stored ones back naive; we only store UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True)
class RefreshHandle:
    """A stored refresh token as Authlib's refresh grant and revocation endpoint use it."""

    id: int
    family_id: str
    client_id: str
    account_id: int
    scope: str

    def check_client(self, client: Any) -> bool:
        """Only the client it was issued to may use or revoke it."""
        return bool(client.client_id == self.client_id)

    def get_scope(self) -> str:
        """The scope granted with the family."""
        return self.scope


def _handle(row: RefreshToken) -> RefreshHandle:
    return RefreshHandle(row.id, row.family_id, row.client_id, row.account_id, row.scope)


def issue(*, client_id: str, account_id: int, scope: str, family_id: str) -> tuple[str, int]:
    """A new refresh token in family_id; returns it and its lifetime (caller commits)."""
    lifetime = int(current_app.config["OAUTH2_REFRESH_TOKEN_LIFETIME"])
    token = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    db.session.add(
        RefreshToken(
            token_hash=hash_token(token),
            family_id=family_id,
            client_id=client_id,
            account_id=account_id,
            scope=scope,
            issued_at=now,
            expires_at=now + timedelta(seconds=lifetime),
        )
    )
    return token, lifetime


def claim(token: str) -> RefreshHandle | None:
    """Spend a refresh token; None when unknown, revoked, expired or already spent.

    Spending is an UPDATE guarded by ``spent_at IS NULL``: of two concurrent uses exactly one
    wins (PostgreSQL's row lock makes the other wait, then see it spent). A reuse revokes the
    family and commits that at once; the successful path commits with the new token, so a
    failure later in the request leaves the token unspent.
    """
    row = db.session.scalars(
        select(RefreshToken).where(RefreshToken.token_hash == hash_token(token))
    ).first()
    if row is None or row.revoked_at is not None:
        return None
    if row.spent_at is not None:
        _reused(row)
        return None
    if as_utc(row.expires_at) <= datetime.now(UTC):
        return None
    result = db.session.execute(
        update(RefreshToken)
        .where(
            RefreshToken.id == row.id,
            RefreshToken.spent_at.is_(None),
            RefreshToken.revoked_at.is_(None),
        )
        .values(spent_at=datetime.now(UTC))
        .execution_options(synchronize_session=False)
    )
    if int(getattr(result, "rowcount", 0) or 0) != 1:
        db.session.refresh(row)
        if row.revoked_at is None:
            _reused(row)
        return None
    return _handle(row)


def _reused(row: RefreshToken) -> None:
    revoke_family(row.family_id, reason="spent refresh token presented again")
    db.session.commit()


def find(token: str) -> RefreshHandle | None:
    """A refresh token in any state (for revocation), or None."""
    row = db.session.scalars(
        select(RefreshToken).where(RefreshToken.token_hash == hash_token(token))
    ).first()
    return _handle(row) if row is not None else None


def revoke_family(family_id: str, *, reason: str, actor: Actor = SYSTEM) -> int:
    """Revoke every live token of a family; audited; returns how many (caller commits)."""
    result = db.session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
        .execution_options(synchronize_session=False)
    )
    count = int(getattr(result, "rowcount", 0) or 0)
    audit(
        "oauth.refresh.revoke_family",
        actor=actor,
        subject=f"refresh-family:{family_id}",
        details={"reason": reason, "tokens": count},
    )
    return count


def revoke_account(account_id: int, *, reason: str, client_id: str | None = None) -> int:
    """Revoke an account's live refresh tokens (for one client, or all); caller commits."""
    query = (
        update(RefreshToken)
        .where(
            RefreshToken.account_id == account_id,
            RefreshToken.revoked_at.is_(None),
            RefreshToken.spent_at.is_(None),
            RefreshToken.expires_at > datetime.now(UTC),
        )
        .values(revoked_at=datetime.now(UTC))
        .execution_options(synchronize_session=False)
    )
    if client_id is not None:
        query = query.where(RefreshToken.client_id == client_id)
    result = db.session.execute(query)
    return int(getattr(result, "rowcount", 0) or 0)


def purge() -> int:
    """Delete expired refresh tokens and old authorization codes; returns rows (caller commits).

    Codes are kept as long as a family born from them may live, so that a replayed code can
    still find and revoke its family.
    """
    now = datetime.now(UTC)
    lifetime = timedelta(seconds=int(current_app.config["OAUTH2_REFRESH_TOKEN_LIFETIME"]))
    removed = 0
    for statement in (
        delete(RefreshToken).where(RefreshToken.expires_at < now),
        delete(AuthorizationCode).where(AuthorizationCode.expires_at < now - lifetime),
    ):
        result = db.session.execute(statement)
        removed += int(getattr(result, "rowcount", 0) or 0)
    return removed
