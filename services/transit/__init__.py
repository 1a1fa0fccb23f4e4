"""Transit: Beijing rail and bus fares on an imported GTFS network (docs/transit-fares.md)."""

from __future__ import annotations

from pathlib import Path

from citizen_card.public import ServicePlugin
from services.transit.fares import DEFAULT_RULES_FILE
from services.transit.gtfs import register_cli
from services.transit.views import blp

service = ServicePlugin(
    name="transit",
    blueprint=blp,
    scopes={
        "transit:read": "See fares and your trips",
        "transit:tap": "Gate terminals: submit taps",
        "transit:manage": "Stations: record residents' bus concessions",
    },
    models="services.transit.models",
    migrations=Path(__file__).parent / "migrations",
    config_defaults={
        # The fare rules (JSON, effective-dated rule sets); read once per process, reloaded
        # when the file changes.
        "TRANSIT_FARE_RULES_FILE": str(DEFAULT_RULES_FILE),
        # `flask transit import-gtfs` reports progress on stderr every this many rows.
        "TRANSIT_IMPORT_PROGRESS_EVERY": 100_000,
    },
    init_app=register_cli,
)
