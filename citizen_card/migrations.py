"""Flask-Migrate wiring: the core branch plus one Alembic branch per enabled service."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Flask
from flask import current_app

from citizen_card.extensions import db
from citizen_card.extensions import migrate

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
CORE = "core"


def init_app(app: Flask) -> None:
    """Bind Flask-Migrate to the app and the repo's migrations folder."""
    migrate.init_app(app, db, directory=str(MIGRATIONS_DIR))


@migrate.configure
def _add_service_branches(config: Any) -> Any:
    # Every enabled service's own versions folder joins the core's.
    from citizen_card.plugins import enabled_services

    locations = [str(MIGRATIONS_DIR / "versions")]
    for plugin in enabled_services(current_app).values():
        if plugin.migrations is not None:
            locations.append(str(Path(plugin.migrations).resolve()))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", os.pathsep.join(locations))
    return config


def owner_of(table: str, services: list[str]) -> str:
    """The owner of a table: the service whose prefix it carries, else the core."""
    for name in sorted(services, key=len, reverse=True):
        if table.startswith(name + "_"):
            return name
    return CORE


def include_object_for(selected: str) -> Any:
    """An Alembic include_object filter keeping only the selected owner's tables.

    ``selected`` is a service name, ``core``, or ``all``.
    """
    from citizen_card.plugins import enabled_services

    services = list(enabled_services(current_app))

    def include_object(
        obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
    ) -> bool:
        if selected == "all":
            return True
        table = obj if type_ == "table" else getattr(obj, "table", None)
        table_name = name if type_ == "table" else getattr(table, "name", None)
        if table_name is None:
            return True
        return owner_of(table_name, services) == selected

    return include_object
