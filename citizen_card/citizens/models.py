"""The ``citizen`` table: one row per person known to the registry."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from datetime import datetime

from sqlalchemy import CheckConstraint
from sqlalchemy import Date
from sqlalchemy import DateTime
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from citizen_card.citizens.reference import EMPLOYMENT_STATUSES
from citizen_card.citizens.reference import INSURANCE_SCHEMES
from citizen_card.citizens.reference import RESIDENCE_TYPES
from citizen_card.citizens.reference import SEXES
from citizen_card.citizens.reference import STATUSES
from citizen_card.db import Base
from citizen_card.pii import Encrypted

# Encryption contexts (bound into each ciphertext) double as blind-index contexts, so an index
# computed for one column never matches another's.
NAME_CONTEXT = "citizen.name"
NATIONAL_ID_CONTEXT = "citizen.national_id"
PHONE_CONTEXT = "citizen.phone"

# The personal fields masked for ordinary callers and shown in full only to holders of the
# personal-data scope (schemas.CitizenPiiSchema); reads that reveal them are audited.
PII_FIELDS = ("name", "national_id", "phone", "birth_date")


def _one_of(column: str, values: Iterable[str]) -> str:
    # The values are our own constants (reference.py), never user input.
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Citizen(Base):
    """A person: identity (encrypted), derived facts, residence and insurance, life status.

    ``version_id`` is SQLAlchemy's version counter: every UPDATE says ``WHERE version_id = <the
    version read>`` and fails if someone else wrote in between, so no update is silently lost.
    """

    __tablename__ = "citizen"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Encrypted(NAME_CONTEXT))
    national_id: Mapped[str] = mapped_column(Encrypted(NATIONAL_ID_CONTEXT))
    # Unique in the database itself: two racing registrations of one person cannot both land.
    national_id_index: Mapped[str] = mapped_column(String(64), unique=True)
    birth_date: Mapped[date] = mapped_column(Date)
    sex: Mapped[str] = mapped_column(String(1))
    phone: Mapped[str | None] = mapped_column(Encrypted(PHONE_CONTEXT))
    # Not unique: family members share a phone.
    phone_index: Mapped[str | None] = mapped_column(String(64), index=True)
    # Checked against reference.DISTRICTS in code, not by a CHECK: the district list is data that
    # grows (other cities) without touching rows already stored.
    district: Mapped[str] = mapped_column(String(6))
    residence_type: Mapped[str] = mapped_column(String(16))
    insurance_scheme: Mapped[str] = mapped_column(String(16))
    employment_status: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    # When the registry learned of the status (UTC) and, for a life event, when it happened.
    status_changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status_effective_date: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Set by the actions, not by an onupdate default: re-encryption (`flask keys rotate`)
    # rewrites ciphertexts with a Core UPDATE and must not look like a change of the record.
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    version_id: Mapped[int] = mapped_column(Integer)

    __mapper_args__ = {"version_id_col": version_id}
    __table_args__ = (
        CheckConstraint(_one_of("sex", SEXES), name="sex_valid"),
        CheckConstraint(_one_of("residence_type", RESIDENCE_TYPES), name="residence_type_valid"),
        CheckConstraint(
            _one_of("insurance_scheme", INSURANCE_SCHEMES), name="insurance_scheme_valid"
        ),
        CheckConstraint(
            _one_of("employment_status", EMPLOYMENT_STATUSES), name="employment_status_valid"
        ),
        CheckConstraint(_one_of("status", STATUSES), name="status_valid"),
        # A phone without its index could never be found again (and vice versa).
        CheckConstraint("(phone IS NULL) = (phone_index IS NULL)", name="phone_index_in_step"),
        # The list filters: district alone, or district and status.
        Index("ix_citizen_district_status", "district", "status"),
    )

    def __repr__(self) -> str:
        # No personal data in reprs: they end up in logs and tracebacks.
        return f"<Citizen {self.id} {self.status} v{self.version_id}>"
