"""Wallet API: partner top-ups (idempotent), balance and statement."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask import jsonify
from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint

from citizen_card.audit.actions import record as audit
from citizen_card.extensions import db
from citizen_card.ledger import actions
from citizen_card.ledger import wallets
from citizen_card.ledger.idempotency import idempotency_key
from citizen_card.ledger.idempotency import run_once
from citizen_card.ledger.schemas import StatementArgsSchema
from citizen_card.ledger.schemas import StatementLineSchema
from citizen_card.ledger.schemas import TopupResultSchema
from citizen_card.ledger.schemas import TopupSchema
from citizen_card.ledger.schemas import WalletSchema
from citizen_card.oauth.protect import current_principal
from citizen_card.oauth.protect import require_scopes

blp = Blueprint(
    "wallets",
    __name__,
    url_prefix="/api/v1/wallets",
    description="Citizens' wallets. Amounts are integer fen. Money-moving requests "
    "need an Idempotency-Key header.",
)
_IDEMPOTENCY = {
    "parameters": [
        {
            "in": "header",
            "name": "Idempotency-Key",
            "required": True,
            "schema": {"type": "string", "maxLength": 128},
        }
    ]
}


def _own() -> int | None:
    p = current_principal()
    return p.citizen_id if p.kind == "resident" else None


def _audit_read(citizen_id: int, what: str) -> None:
    # A partner's look at someone's money is personal data: audited.
    p = current_principal()
    if p.kind in ("partner", "terminal"):
        audit(
            f"wallet.{what}",
            actor=p.actor,
            citizen_id=citizen_id,
            purpose=request.args.get("purpose"),
        )
        db.session.commit()


@blp.route("/<int:citizen_id>/topups")
class Topups(MethodView):
    """Top-ups by banks and payment partners."""

    @require_scopes("wallet:topup", kinds=("partner",))
    @blp.arguments(TopupSchema())
    @blp.response(201, TopupResultSchema)
    @blp.doc(**_IDEMPOTENCY)
    def post(self, data: dict[str, Any], citizen_id: int) -> Response:
        """Top up a wallet (idempotent on Idempotency-Key)"""
        p = current_principal()
        key = idempotency_key()

        def work() -> tuple[int, Any]:
            entry, balance = wallets.topup(
                citizen_id,
                data["amount_fen"],
                organisation=p.organisation or p.client_id,
                actor=p.actor,
                reference=data.get("reference"),
            )
            return 201, {
                "entry_id": entry.id,
                "amount_fen": data["amount_fen"],
                "balance_fen": balance,
            }

        status, body, replayed = run_once(
            p.client_id, key, {"path": request.path, "body": data}, work
        )
        response = jsonify(body)
        response.status_code = status
        if replayed:
            response.headers["Idempotent-Replayed"] = "true"
        return response


@blp.route("/<int:citizen_id>")
class Wallet(MethodView):
    """Balance."""

    @require_scopes("wallet:read")
    @blp.response(200, WalletSchema)
    def get(self, citizen_id: int) -> Any:
        """A wallet's balance (residents: their own)"""
        wallet = wallets.wallet_for(citizen_id, own_citizen_id=_own())
        _audit_read(citizen_id, "balance")
        return {"citizen_id": citizen_id, "balance_fen": actions.balance(wallet)}


@blp.route("/<int:citizen_id>/statement")
class Statement(MethodView):
    """Statement."""

    @require_scopes("wallet:read")
    @blp.arguments(StatementArgsSchema(), location="query")
    @blp.response(200, StatementLineSchema(many=True))
    def get(self, args: dict[str, Any], citizen_id: int) -> Any:
        """A wallet's statement, newest first"""
        wallet = wallets.wallet_for(citizen_id, own_citizen_id=_own())
        _audit_read(citizen_id, "statement")
        return actions.statement(wallet, **args)
