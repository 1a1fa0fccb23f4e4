"""Imports every core model so the metadata is complete for Alembic and the app."""

from __future__ import annotations

from citizen_card.audit.models import AuditBlock  # noqa: F401
from citizen_card.audit.models import AuditEvent  # noqa: F401
