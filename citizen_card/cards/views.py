"""Cards, the issuer PKI and card login over HTTP."""

from __future__ import annotations

import time
from typing import Any

from flask import Response
from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint

from card_reader.protocol import SignedTransaction
from citizen_card.cards import actions
from citizen_card.cards import pki
from citizen_card.cards.schemas import CardSchema
from citizen_card.cards.schemas import CardSessionCreateSchema
from citizen_card.cards.schemas import CertificateStatusSchema
from citizen_card.cards.schemas import ChallengeSchema
from citizen_card.cards.schemas import DenyListArgsSchema
from citizen_card.cards.schemas import DenyListSchema
from citizen_card.cards.schemas import IssuanceCreateSchema
from citizen_card.cards.schemas import IssuanceFailSchema
from citizen_card.cards.schemas import IssuanceSchema
from citizen_card.cards.schemas import PersonalizationSchema
from citizen_card.cards.schemas import PersonalizeSchema
from citizen_card.cards.schemas import ReportLostSchema
from citizen_card.cards.schemas import TokenSchema
from citizen_card.cards.schemas import UnsuspendSchema
from citizen_card.cards.schemas import VerifiedSchema
from citizen_card.cards.schemas import VerifySchema
from citizen_card.extensions import db
from citizen_card.oauth.accounts import create_resident_account
from citizen_card.oauth.clients import get_client
from citizen_card.oauth.protect import current_principal
from citizen_card.oauth.protect import require_scopes
from citizen_card.oauth.tokens import Principal
from citizen_card.oauth.tokens import issue_access_token

cards_blp = Blueprint(
    "cards",
    __name__,
    url_prefix="/api/v1/cards",
    description="Card issuance at stations, lifecycle, deny list",
)
pki_blp = Blueprint(
    "pki", __name__, url_prefix="/api/v1/pki", description="The issuer CA and certificate status"
)
card_auth_blp = Blueprint(
    "card_auth",
    __name__,
    url_prefix="/api/v1/card-auth",
    description="Card + PIN login at a terminal",
)
STATION_KINDS = ("station", "staff")


def terminal_of(principal: Principal) -> str:
    """The terminal id a client's cards sign for: its registered site, else its client id."""
    return principal.site or principal.client_id


@cards_blp.route("/issuance")
class Issuances(MethodView):
    """Step 1 of issuing."""

    @require_scopes("cards:issue", kinds=STATION_KINDS)
    @cards_blp.arguments(IssuanceCreateSchema())
    @cards_blp.response(201, IssuanceSchema)
    def post(self, data: dict[str, Any]) -> Any:
        """Open an issuance request for a citizen (or a replacement)"""
        p = current_principal()
        return actions.request_issuance(
            data["citizen_id"],
            actor=p.actor,
            station=p.station or p.site,
            replacement=data["replacement"],
        )


@cards_blp.route("/issuance/<int:request_id>/personalize")
class Personalize(MethodView):
    """Steps 2-3."""

    @require_scopes("cards:issue", kinds=STATION_KINDS)
    @cards_blp.arguments(PersonalizeSchema())
    @cards_blp.response(200, PersonalizationSchema)
    def post(self, data: dict[str, Any], request_id: int) -> Any:
        """Certify the key the card generated; get what to write to the card"""
        return actions.personalize(request_id, data["public_key"], actor=current_principal().actor)


@cards_blp.route("/issuance/<int:request_id>/complete")
class Complete(MethodView):
    """Step 4."""

    @require_scopes("cards:issue", kinds=STATION_KINDS)
    @cards_blp.response(200, CardSchema)
    def post(self, request_id: int) -> Any:
        """The card is written and locked: mark it issued"""
        return actions.complete_issuance(request_id, actor=current_principal().actor)


@cards_blp.route("/issuance/<int:request_id>/fail")
class Fail(MethodView):
    """Giving up."""

    @require_scopes("cards:issue", kinds=STATION_KINDS)
    @cards_blp.arguments(IssuanceFailSchema())
    @cards_blp.response(200, IssuanceSchema)
    def post(self, data: dict[str, Any], request_id: int) -> Any:
        """Record that personalization failed (or was cancelled)"""
        return actions.fail_issuance(request_id, actor=current_principal().actor, **data)


@cards_blp.route("/deny-list")
class DenyList(MethodView):
    """For offline terminals."""

    @require_scopes("cards:read")
    @cards_blp.arguments(DenyListArgsSchema(), location="query")
    @cards_blp.response(200, DenyListSchema)
    def get(self, args: dict[str, Any]) -> Any:
        """Deny-list changes since a version"""
        version, changes = actions.deny_list_since(args["since"])
        return {"version": version, "changes": changes}


@cards_blp.route("/<card_number>")
class CardItem(MethodView):
    """One card."""

    @require_scopes("cards:read")
    @cards_blp.response(200, CardSchema)
    def get(self, card_number: str) -> Any:
        """A card's status"""
        return actions.get_card(card_number)


@cards_blp.route("/<card_number>/report-lost")
class ReportLost(MethodView):
    """挂失."""

    @require_scopes("cards:suspend")
    @cards_blp.arguments(ReportLostSchema())
    @cards_blp.response(200, CardSchema)
    def post(self, data: dict[str, Any], card_number: str) -> Any:
        """Report a card lost: refused from the very next request"""
        p = current_principal()
        # A resident may report only their own card; staff and partner hotlines any card.
        own = p.citizen_id if p.kind == "resident" else None
        return actions.report_lost(
            card_number, actor=p.actor, citizen_id=own, reason=data["reason"]
        )


@cards_blp.route("/<card_number>/unsuspend")
class Unsuspend(MethodView):
    """Lifting a suspension."""

    @require_scopes("cards:issue", kinds=STATION_KINDS)
    @cards_blp.arguments(UnsuspendSchema())
    @cards_blp.response(200, CardSchema)
    def post(self, data: dict[str, Any], card_number: str) -> Any:
        """At a station, card present and PIN verified: lift a suspension"""
        p = current_principal()
        tx: SignedTransaction = data["transaction"]
        if tx.card_number != card_number:
            raise actions.InvalidCardData("the transaction is from another card")
        return actions.unsuspend(tx, actor=p.actor, terminal=terminal_of(p))


@pki_blp.route("/issuer.pem")
class IssuerCertificate(MethodView):
    """The issuer CA certificate (public)."""

    def get(self) -> Response:
        """The city's card issuer CA certificate, PEM"""
        return Response(
            pki.issuer_pem(),
            mimetype="application/x-pem-file",
            headers={"Cache-Control": "public, max-age=3600"},
        )


@pki_blp.route("/cards/<card_number>/status")
class CertificateStatus(MethodView):
    """Online status."""

    @require_scopes("cards:read")
    @pki_blp.response(200, CertificateStatusSchema)
    def get(self, card_number: str) -> Any:
        """A card certificate's status: good or revoked"""
        return actions.certificate_status(card_number)


@card_auth_blp.route("/verify")
class Verify(MethodView):
    """A card check at a terminal (a clinic check-in, an identity check)."""

    @require_scopes("card_auth:verify", kinds=("terminal", "station"))
    @card_auth_blp.arguments(VerifySchema())
    @card_auth_blp.response(200, VerifiedSchema)
    def post(self, data: dict[str, Any]) -> Any:
        """Verify a card's signed transaction (one round trip) and spend its counter"""
        p = current_principal()
        verified = actions.verify_transaction(
            data["transaction"],
            actor=p.actor,
            terminal=terminal_of(p),
            online=True,
            require_pin=data["require_pin"],
            purpose="card.verify",
        )
        db.session.commit()
        return verified


@card_auth_blp.route("/challenges")
class Challenges(MethodView):
    """Login challenges."""

    @require_scopes("card_auth:login", kinds=("terminal", "station"))
    @card_auth_blp.response(201, ChallengeSchema)
    def post(self) -> Any:
        """A single-use challenge for the card to sign (60 s)"""
        return actions.new_challenge(client_id=current_principal().client_id)


@card_auth_blp.route("/sessions")
class Sessions(MethodView):
    """Card + PIN login."""

    @require_scopes("card_auth:login", kinds=("terminal", "station"))
    @card_auth_blp.arguments(CardSessionCreateSchema())
    @card_auth_blp.response(201, TokenSchema)
    def post(self, data: dict[str, Any]) -> Any:
        """Exchange the card's signed challenge for a short resident token"""
        p = current_principal()
        card = actions.card_login(
            data["card_number"],
            data["challenge"],
            data["signature"],
            actor=p.actor,
            client_id=p.client_id,
        )
        account = create_resident_account(card.citizen_id, actor=p.actor)
        client = get_client(p.client_id)
        assert client is not None
        delegable = set(current_app.config["CARD_LOGIN_SCOPES"])
        issued = issue_access_token(
            client_id=client.client_id,
            client_kind=client.kind,
            organisation=client.organisation,
            scopes=sorted(delegable & client.scopes),
            account=account,
            site=client.site,
            auth_time=int(time.time()),
            lifetime=int(current_app.config["CARD_LOGIN_TOKEN_LIFETIME"]),
        )
        db.session.commit()
        return {
            "access_token": issued.token,
            "token_type": "Bearer",
            "expires_in": issued.expires_in,
            "scope": issued.claims["scope"],
        }
