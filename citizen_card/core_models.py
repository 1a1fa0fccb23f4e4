"""Imports every core model so the metadata is complete for Alembic and the app."""

from __future__ import annotations

from citizen_card.audit.models import AuditBlock  # noqa: F401
from citizen_card.audit.models import AuditEvent  # noqa: F401
from citizen_card.cards.models import Card  # noqa: F401
from citizen_card.cards.models import CardChallenge  # noqa: F401
from citizen_card.cards.models import CardTransaction  # noqa: F401
from citizen_card.cards.models import DenyListChange  # noqa: F401
from citizen_card.cards.models import DenyListHead  # noqa: F401
from citizen_card.cards.models import IssuanceRequest  # noqa: F401
from citizen_card.citizens.models import Citizen  # noqa: F401
from citizen_card.ledger.models import IdempotencyRecord  # noqa: F401
from citizen_card.ledger.models import JournalEntry  # noqa: F401
from citizen_card.ledger.models import LedgerAccount  # noqa: F401
from citizen_card.ledger.models import Posting  # noqa: F401
from citizen_card.oauth.models import Account  # noqa: F401
from citizen_card.oauth.models import AuthorizationCode  # noqa: F401
from citizen_card.oauth.models import Consent  # noqa: F401
from citizen_card.oauth.models import LoginThrottle  # noqa: F401
from citizen_card.oauth.models import OAuthClient  # noqa: F401
from citizen_card.oauth.models import RefreshToken  # noqa: F401
from citizen_card.oauth.models import RevokedToken  # noqa: F401
from citizen_card.oauth.models import UsedAssertion  # noqa: F401
