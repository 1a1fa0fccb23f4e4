"""The only core module a service may import: the plugin contract and shared helpers."""

from __future__ import annotations

from flask_smorest import Blueprint

from citizen_card.audit.actions import Actor
from citizen_card.audit.actions import record as record_audit
from citizen_card.db import Base
from citizen_card.errors import Conflict
from citizen_card.errors import DomainError
from citizen_card.errors import NotFound
from citizen_card.extensions import db
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
    "Actor",
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
