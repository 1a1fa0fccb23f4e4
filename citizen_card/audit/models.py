"""Audit trail tables: append-only events, sealed into hash-chained blocks."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger
from sqlalchemy import DateTime
from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from citizen_card.db import Base

# BIGINT on PostgreSQL; SQLite only auto-increments an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class AuditEvent(Base):
    """One decision or access: who, what, which citizen, when, why. Never updated."""

    __tablename__ = "audit_event"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(32), default="ok")
    citizen_id: Mapped[int | None] = mapped_column(BigInteger)
    subject: Mapped[str | None] = mapped_column(String(128))
    purpose: Mapped[str | None] = mapped_column(String(256))
    request_id: Mapped[str | None] = mapped_column(String(128))
    # Canonical JSON text, hashed exactly as stored.
    details: Mapped[str] = mapped_column(Text, default="{}")
    # Set once, by sealing.
    block_id: Mapped[int | None] = mapped_column(ForeignKey("audit_block.id"))
    chain_hash: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_audit_event_citizen_id", "citizen_id", "id"),
        Index("ix_audit_event_block_id", "block_id"),
    )


class AuditBlock(Base):
    """A sealed run of events, chained to the block before it."""

    __tablename__ = "audit_block"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sealed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    first_event_id: Mapped[int] = mapped_column(BigInteger)
    last_event_id: Mapped[int] = mapped_column(BigInteger)
    event_count: Mapped[int] = mapped_column(Integer)
    # JSON list of [from, to] id ranges that had no committed row when sealed.
    skipped: Mapped[str] = mapped_column(Text, default="[]")
    # Unique: two sealers racing can never fork the chain.
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)
