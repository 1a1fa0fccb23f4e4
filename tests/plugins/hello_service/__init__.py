"""A minimal service that proves the plugin contract end to end (models, migration, routes)."""

from __future__ import annotations

from pathlib import Path

from citizen_card.public import ServicePlugin
from tests.plugins.hello_service.views import blp

service = ServicePlugin(
    name="hello_service",
    blueprint=blp,
    scopes={
        "hello_service:read": "Read greetings",
        "hello_service:write": "Leave greetings",
    },
    models="tests.plugins.hello_service.models",
    migrations=Path(__file__).parent / "migrations",
    config_defaults={"HELLO_SERVICE_MAX_LENGTH": 40},
)
