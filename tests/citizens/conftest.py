"""Fixtures of the registry tests: actors, valid registration data, a citizen factory."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from collections.abc import Iterator
from datetime import UTC
from datetime import date
from datetime import datetime
from typing import Any

import pytest

from citizen_card.audit.actions import Actor
from citizen_card.citizens import actions
from citizen_card.citizens.models import NATIONAL_ID_CONTEXT
from citizen_card.citizens.models import Citizen
from citizen_card.citizens.national_id import make_national_id
from citizen_card.pii import blind_index

STAFF = Actor("staff", "clerk-7")
PARTNER = Actor("client", "hospital-1")
TERMINAL = Actor("terminal", "gate-42")

_sequence = itertools.count(1)


def citizen_data(**overrides: Any) -> dict[str, Any]:
    """Valid registration data with a fresh national ID (unique per call in a process)."""
    data: dict[str, Any] = {
        "national_id": make_national_id("110105", date(1990, 3, 7), next(_sequence) % 500, "M"),
        "name": "张三丰",
        "phone": "13812345678",
        "district": "110108",
        "residence_type": "registered",
        "insurance_scheme": "employee",
        "employment_status": "employed",
    }
    data.update(overrides)
    return data


def raw_citizen_row(national_id: str, **overrides: Any) -> dict[str, Any]:
    """Column values for a Core INSERT that bypasses the actions (needs an app context)."""
    now = datetime.now(UTC)
    row: dict[str, Any] = {
        "name": "李四",
        "national_id": national_id,
        "national_id_index": blind_index(national_id, NATIONAL_ID_CONTEXT),
        "birth_date": date(1990, 3, 7),
        "sex": "M",
        "district": "110105",
        "residence_type": "resident",
        "insurance_scheme": "resident",
        "employment_status": "other",
        "status": "active",
        "status_changed_at": now,
        "created_at": now,
        "updated_at": now,
        "version_id": 1,
    }
    row.update(overrides)
    return row


@pytest.fixture()
def make_citizen(app_ctx: Any) -> Callable[..., Citizen]:
    """Register a citizen through the action (committed inside the test's rollback)."""

    def make(**overrides: Any) -> Citizen:
        return actions.create_citizen(citizen_data(**overrides), actor=STAFF)

    return make


@pytest.fixture()
def listen_life_events() -> Iterator[Callable[[actions.LifeEventListener], None]]:
    """Register life-event listeners for one test; they are removed afterwards."""
    added: list[actions.LifeEventListener] = []

    def listen(callback: actions.LifeEventListener) -> None:
        actions.on_life_event(callback)
        added.append(callback)

    yield listen
    for callback in added:
        actions.remove_life_event_listener(callback)
