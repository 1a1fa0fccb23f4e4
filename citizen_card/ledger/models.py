"""Ledger accounts, journal entries, postings, and idempotency records."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger
from sqlalchemy import Boolean
from sqlalchemy import CheckConstraint
from sqlalchemy import DateTime
from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy import UniqueConstraint
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from citizen_card.audit.models import BigId
from citizen_card.db import Base


class LedgerAccount(Base):
    """An account: a citizen's wallet, an operator's revenue, a partner's top-up clearing…

    For guarded accounts (no overdraft: wallets) ``balance_fen`` is a cache of the sum of the
    account's postings, moved in the same statement that checks it (and proven equal by
    ``flask ledger verify``). The city's own accounts keep no cache (always 0): their balance
    is the sum of their postings, so the busiest accounts are never one contended row.
    """

    __tablename__ = "ledger_account"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    owner: Mapped[str] = mapped_column(String(128))
    balance_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    # Wallets may not go below zero; clearing and revenue accounts are sides of the city's
    # books and may.
    allow_negative: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("kind", "owner"),
        CheckConstraint("allow_negative OR balance_fen >= 0", name="no_overdraft"),
    )


class JournalEntry(Base):
    """One movement of money: its postings sum to zero."""

    __tablename__ = "ledger_entry"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    memo: Mapped[str | None] = mapped_column(String(256))
    reference: Mapped[str | None] = mapped_column(String(128))
    actor: Mapped[str] = mapped_column(String(160))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class Posting(Base):
    """One line of an entry: an amount in fen (positive credits the account)."""

    __tablename__ = "ledger_posting"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("ledger_entry.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_account.id"))
    amount_fen: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        CheckConstraint("amount_fen <> 0", name="nonzero"),
        Index("ix_ledger_posting_account_entry", "account_id", "entry_id"),
    )


class IdempotencyRecord(Base):
    """The answer given to (client, Idempotency-Key), replayed for the same request."""

    __tablename__ = "ledger_idempotency"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[int | None] = mapped_column(Integer)
    response: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
