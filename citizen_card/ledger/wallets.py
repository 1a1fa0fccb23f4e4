"""Citizens' wallets: top-ups by partners, balance and statement, access rules."""

from __future__ import annotations

from citizen_card.audit.actions import Actor
from citizen_card.audit.actions import record as audit
from citizen_card.citizens.models import Citizen
from citizen_card.errors import DomainError
from citizen_card.errors import NotFound
from citizen_card.extensions import db
from citizen_card.ledger.actions import TOPUP_CLEARING
from citizen_card.ledger.actions import Leg
from citizen_card.ledger.actions import get_account
from citizen_card.ledger.actions import post
from citizen_card.ledger.actions import wallet_of
from citizen_card.ledger.models import JournalEntry
from citizen_card.ledger.models import LedgerAccount

MAX_TOPUP_FEN = 1_000_000  # 10,000 元 at a time: larger sums go through a station


class WalletNotFound(NotFound):
    """No such citizen, or not one the caller may see."""

    code = "WALLET_NOT_FOUND"
    title = "Wallet not found"
    title_zh = "账户不存在"


class TopupRefused(DomainError):
    """A top-up breaks a rule."""

    status = 422
    code = "TOPUP_REFUSED"
    title = "Top-up refused"
    title_zh = "充值被拒绝"


def wallet_for(citizen_id: int, *, own_citizen_id: int | None) -> LedgerAccount:
    """The wallet of a citizen the caller may see (a resident only their own)."""
    if own_citizen_id is not None and own_citizen_id != citizen_id:
        raise WalletNotFound(f"no wallet {citizen_id}")
    if db.session.get(Citizen, citizen_id) is None:
        raise WalletNotFound(f"no wallet {citizen_id}")
    return wallet_of(citizen_id)


def topup(
    citizen_id: int, amount_fen: int, *, organisation: str, actor: Actor, reference: str | None
) -> tuple[JournalEntry, int]:
    """Credit a wallet from the partner's clearing account; returns the entry and balance."""
    citizen = db.session.get(Citizen, citizen_id)
    if citizen is None:
        raise WalletNotFound(f"no wallet {citizen_id}")
    if citizen.status != "active":
        raise TopupRefused(
            f"the citizen's record is {citizen.status}", citizen_status=citizen.status
        )
    if not 1 <= amount_fen <= MAX_TOPUP_FEN:
        raise TopupRefused(f"amount must be 1 to {MAX_TOPUP_FEN} fen", max_fen=MAX_TOPUP_FEN)
    wallet = wallet_of(citizen_id)
    clearing = get_account(TOPUP_CLEARING, organisation, allow_negative=True)
    entry = post(
        "topup",
        [Leg(clearing, -amount_fen), Leg(wallet, amount_fen)],
        actor=actor,
        memo=f"top-up by {organisation}",
        reference=reference,
    )
    audit(
        "wallet.topup",
        actor=actor,
        citizen_id=citizen_id,
        subject=f"entry:{entry.id}",
        details={"amount_fen": amount_fen, "reference": reference},
    )
    db.session.flush()
    return entry, int(db.session.get(LedgerAccount, wallet.id).balance_fen)  # type: ignore[union-attr]
