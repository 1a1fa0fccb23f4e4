"""The only core module a service may import: the plugin contract and shared helpers."""

from __future__ import annotations

from flask_smorest import Blueprint

from card_reader.protocol import SignedTransaction
from citizen_card.audit.actions import Actor
from citizen_card.audit.actions import record as record_audit
from citizen_card.bulk import BulkError
from citizen_card.bulk import Step
from citizen_card.bulk import new_ids
from citizen_card.bulk import new_ids_step
from citizen_card.bulk import run as run_bulk
from citizen_card.bulk import sql
from citizen_card.cards.actions import CARD_HOLDERS_SQL
from citizen_card.cards.actions import CardRecord
from citizen_card.cards.actions import CardRefused
from citizen_card.cards.actions import VerifiedTransaction
from citizen_card.cards.actions import card_records
from citizen_card.cards.actions import card_records_step
from citizen_card.cards.actions import check_card
from citizen_card.cards.actions import spend_steps
from citizen_card.cards.actions import verify_transaction as verify_card_transaction
from citizen_card.cards.schemas import SignedTransactionSchema
from citizen_card.db import Base
from citizen_card.errors import Conflict
from citizen_card.errors import DomainError
from citizen_card.errors import NotFound
from citizen_card.extensions import db
from citizen_card.lean import documented
from citizen_card.lean import parse_arguments
from citizen_card.ledger.actions import InsufficientFunds
from citizen_card.ledger.actions import Leg
from citizen_card.ledger.actions import NewEntry
from citizen_card.ledger.actions import balance
from citizen_card.ledger.actions import check_moves
from citizen_card.ledger.actions import entry_ids_step
from citizen_card.ledger.actions import entry_steps
from citizen_card.ledger.actions import get_account
from citizen_card.ledger.actions import lock_card_wallets_step
from citizen_card.ledger.actions import lock_wallets_step
from citizen_card.ledger.actions import locked_wallets
from citizen_card.ledger.actions import post as post_entry
from citizen_card.ledger.actions import wallet_of
from citizen_card.ledger.idempotency import idempotency_key
from citizen_card.ledger.idempotency import run_once
from citizen_card.oauth.protect import current_principal
from citizen_card.oauth.protect import require_scopes
from citizen_card.oauth.tokens import Principal
from citizen_card.pii import Encrypted
from citizen_card.pii import blind_index
from citizen_card.pii import mask
from citizen_card.pii import mask_name
from citizen_card.pii import mask_national_id
from citizen_card.pii import mask_phone
from citizen_card.plugins import ServicePlugin

__all__ = [
    "CARD_HOLDERS_SQL",
    "lock_card_wallets_step",
    "BulkError",
    "CardRecord",
    "NewEntry",
    "Step",
    "card_records",
    "card_records_step",
    "check_card",
    "check_moves",
    "lock_wallets_step",
    "locked_wallets",
    "entry_ids_step",
    "entry_steps",
    "new_ids",
    "new_ids_step",
    "run_bulk",
    "spend_steps",
    "sql",
    "Actor",
    "CardRefused",
    "InsufficientFunds",
    "Leg",
    "SignedTransaction",
    "documented",
    "parse_arguments",
    "SignedTransactionSchema",
    "VerifiedTransaction",
    "balance",
    "get_account",
    "idempotency_key",
    "post_entry",
    "run_once",
    "verify_card_transaction",
    "wallet_of",
    "Base",
    "Blueprint",
    "Conflict",
    "DomainError",
    "Encrypted",
    "NotFound",
    "Principal",
    "ServicePlugin",
    "blind_index",
    "current_principal",
    "db",
    "mask",
    "mask_name",
    "mask_national_id",
    "mask_phone",
    "record_audit",
    "require_scopes",
]
