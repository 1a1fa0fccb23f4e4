"""Cards, issuance requests, seen transactions, the deny list, and card-login challenges."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger
from sqlalchemy import Boolean
from sqlalchemy import CheckConstraint
from sqlalchemy import DateTime
from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import LargeBinary
from sqlalchemy import String
from sqlalchemy import UniqueConstraint
from sqlalchemy import text
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from citizen_card.audit.models import BigId
from citizen_card.db import Base

CARD_STATES = ("issued", "active", "suspended", "replaced", "cancelled", "expired")
# A citizen "holds" a card in these states; the database allows one at a time.
HELD_STATES = ("issued", "active", "suspended")
REQUEST_STATES = ("new", "personalized", "issued", "failed", "cancelled")
OPEN_REQUEST_STATES = ("new", "personalized")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Card(Base):
    """One physical card: its number, key, certificate and state."""

    __tablename__ = "card"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    card_number: Mapped[str] = mapped_column(String(19), unique=True)
    citizen_id: Mapped[int] = mapped_column(ForeignKey("citizen.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    # 65-byte uncompressed P-256 point, generated on the card.
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    certificate: Mapped[bytes] = mapped_column(LargeBinary)
    certificate_serial: Mapped[str] = mapped_column(String(40), unique=True)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    activated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status_changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status_reason: Mapped[str | None] = mapped_column(String(256))
    replaces_card_id: Mapped[int | None] = mapped_column(ForeignKey("card.id"))

    __table_args__ = (
        CheckConstraint(_in("status", CARD_STATES), name="status_valid"),
        # One held card per citizen, enforced by the database (partial unique index).
        Index(
            "uq_card_one_held_per_citizen",
            "citizen_id",
            unique=True,
            postgresql_where=text(_in("status", HELD_STATES)),
            sqlite_where=text(_in("status", HELD_STATES)),
        ),
    )


class IssuanceRequest(Base):
    """A card being issued at a station: new → personalized → issued | failed | cancelled."""

    __tablename__ = "card_issuance"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    citizen_id: Mapped[int] = mapped_column(ForeignKey("citizen.id"), index=True)
    state: Mapped[str] = mapped_column(String(16))
    replaces_card_id: Mapped[int | None] = mapped_column(ForeignKey("card.id"))
    # Set at personalization: the number and certificate the card was written with. The card
    # row itself is created only when the station confirms, so a half-made card is never
    # "held" by anyone.
    card_number: Mapped[str | None] = mapped_column(String(19), unique=True)
    public_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    certificate: Mapped[bytes | None] = mapped_column(LargeBinary)
    card_id: Mapped[int | None] = mapped_column(ForeignKey("card.id"))
    requested_by: Mapped[str] = mapped_column(String(128))
    station: Mapped[str | None] = mapped_column(String(64))
    failure_reason: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint(_in("state", REQUEST_STATES), name="state_valid"),
        Index(
            "uq_card_issuance_one_open_per_citizen",
            "citizen_id",
            unique=True,
            postgresql_where=text(_in("state", OPEN_REQUEST_STATES)),
            sqlite_where=text(_in("state", OPEN_REQUEST_STATES)),
        ),
    )


class CardTransaction(Base):
    """A transaction counter value a card has spent: (card, ATC) is accepted once, ever."""

    __tablename__ = "card_transaction"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    card_id: Mapped[int] = mapped_column(ForeignKey("card.id"))
    atc: Mapped[int] = mapped_column(BigInteger)
    client_id: Mapped[str] = mapped_column(String(64))
    terminal_id: Mapped[str] = mapped_column(String(64))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    signed_at: Mapped[int] = mapped_column(BigInteger)
    pin_verified: Mapped[bool] = mapped_column(Boolean)
    online: Mapped[bool] = mapped_column(Boolean)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (UniqueConstraint("card_id", "atc"),)


class DenyListChange(Base):
    """One change to the offline terminals' deny list; ``version`` orders the changes."""

    __tablename__ = "card_deny_list"

    version: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    card_number: Mapped[str] = mapped_column(String(19), index=True)
    change: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str] = mapped_column(String(32))
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (CheckConstraint("change IN ('add', 'remove')", name="change_valid"),)


class DenyListHead(Base):
    """The deny list's current version: one row, locked by each writer until it commits.

    Versions are handed out under that lock, so they become visible in version order and a
    terminal that has synced to version N can never miss a change numbered N or lower.
    """

    __tablename__ = "card_deny_list_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)


class CardChallenge(Base):
    """A single-use nonce for card login, bound to the terminal that asked for it."""

    __tablename__ = "card_auth_challenge"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
