"""Residents' remembered consents: what each app may do for them, and withdrawing it.

A consent given on the consent page is remembered per (account, client), so the next sign-in
to the same app for the same (or fewer) scopes skips the page. Withdrawing it through
``DELETE /api/v1/me/consents/<client_id>`` also revokes that app's refresh tokens for the
resident; the next sign-in asks again.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC
from datetime import datetime
from typing import Any

import marshmallow as ma
from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import select

from citizen_card.audit.actions import Actor
from citizen_card.audit.actions import record as audit
from citizen_card.errors import NotFound
from citizen_card.errors import prefers_english
from citizen_card.extensions import db
from citizen_card.oauth import refresh
from citizen_card.oauth.clients import get_client
from citizen_card.oauth.models import Account
from citizen_card.oauth.models import Consent
from citizen_card.oauth.protect import current_principal
from citizen_card.oauth.protect import require_scopes
from citizen_card.oauth.scopes import describe_scope


class ConsentNotFound(NotFound):
    """The resident has no consent in force for that client."""

    code = "CONSENT_NOT_FOUND"
    title = "No such consent"
    title_zh = "没有该授权"


def _active(account_id: int, client_id: str) -> Consent | None:
    return db.session.scalars(
        select(Consent).where(
            Consent.account_id == account_id,
            Consent.client_id == client_id,
            Consent.withdrawn_at.is_(None),
        )
    ).first()


def covers(account_id: int, client_id: str, scopes: Iterable[str]) -> bool:
    """True when a consent in force already includes every one of scopes."""
    consent = _active(account_id, client_id)
    return consent is not None and set(scopes) <= set(consent.scopes.split())


def remember(account: Account, client_id: str, scopes: Iterable[str], *, actor: Actor) -> Consent:
    """Record a consent (added to what is already consented; caller commits)."""
    consent = db.session.scalars(
        select(Consent).where(Consent.account_id == account.id, Consent.client_id == client_id)
    ).first()
    granted = set(scopes)
    now = datetime.now(UTC)
    if consent is None:
        consent = Consent(account_id=account.id, client_id=client_id, scopes="", granted_at=now)
        db.session.add(consent)
    elif consent.withdrawn_at is None:
        granted |= set(consent.scopes.split())
    consent.scopes = " ".join(sorted(granted))
    consent.granted_at = now
    consent.withdrawn_at = None
    audit(
        "oauth.consent.grant",
        actor=actor,
        citizen_id=account.citizen_id,
        subject=f"client:{client_id}",
        details={"scopes": sorted(granted)},
    )
    return consent


def list_consents(account_id: int) -> list[Consent]:
    """The consents in force for an account, oldest first."""
    return list(
        db.session.scalars(
            select(Consent)
            .where(Consent.account_id == account_id, Consent.withdrawn_at.is_(None))
            .order_by(Consent.granted_at, Consent.id)
        )
    )


def withdraw(account_id: int, client_id: str, *, actor: Actor) -> Consent:
    """Withdraw a consent and revoke the client's refresh tokens for the account."""
    consent = _active(account_id, client_id)
    if consent is None:
        raise ConsentNotFound(f"no consent in force for client {client_id!r}")
    consent.withdrawn_at = datetime.now(UTC)
    revoked = refresh.revoke_account(account_id, reason="consent withdrawn", client_id=client_id)
    account = db.session.get(Account, account_id)
    audit(
        "oauth.consent.withdraw",
        actor=actor,
        citizen_id=account.citizen_id if account else None,
        subject=f"client:{client_id}",
        details={"refresh_tokens_revoked": revoked},
    )
    db.session.commit()
    return consent


# -- API -----------------------------------------------------------------------------------
blp = Blueprint(
    "me_consents",
    __name__,
    url_prefix="/api/v1/me/consents",
    description="Your consents to apps (residents, scope me:consents)",
)


def _client_name(consent: Consent) -> str | None:
    client = get_client(consent.client_id)
    return client.name if client else None


def _organisation(consent: Consent) -> str | None:
    client = get_client(consent.client_id)
    return client.organisation if client else None


def _scopes(consent: Consent) -> list[dict[str, str]]:
    english = prefers_english()
    return [
        {"scope": s, "description": describe_scope(current_app, s, english=english)}
        for s in consent.scopes.split()
    ]


class ConsentSchema(ma.Schema):
    """A consent in force: which app, which scopes, since when."""

    client_id = ma.fields.String()
    client_name = ma.fields.Function(_client_name)
    organisation = ma.fields.Function(_organisation)
    scopes = ma.fields.Function(_scopes)
    granted_at = ma.fields.DateTime()


@blp.route("")
class Consents(MethodView):
    """The caller's consents."""

    @require_scopes("me:consents", kinds=("resident",))
    @blp.response(200, ConsentSchema(many=True))
    def get(self) -> Any:
        """List the apps you have allowed, and what each may do"""
        return list_consents(_account_id())


@blp.route("/<client_id>")
class ConsentByClient(MethodView):
    """One consent."""

    @require_scopes("me:consents", kinds=("resident",))
    @blp.response(204)
    def delete(self, client_id: str) -> None:
        """Withdraw your consent to an app; its refresh tokens stop working"""
        principal = current_principal()
        withdraw(_account_id(), client_id, actor=principal.actor)


def _account_id() -> int:
    account_id = current_principal().account_id
    if account_id is None:  # a resident token always carries one; refuse a malformed one
        raise ConsentNotFound("this token names no account")
    return account_id
