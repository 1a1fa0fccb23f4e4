"""The service plugin contract: one ``ServicePlugin`` object per service package.

Services are enabled by an explicit allow-list (``SERVICES``): each entry is a dotted module
path exporting ``service``, or the name of an entry point in the ``citizen_card.services``
group. Nothing is discovered by scanning directories. A bad plugin stops start-up with a
message naming the entry. See docs/plugins.md.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from flask import Flask
from flask_smorest import Blueprint

from citizen_card.config import ConfigError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "citizen_card.services"
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{1,30}$")
_SCOPE_RE = re.compile(r"^[a-z][a-z0-9_]*:[a-z][a-z0-9_]*$")
# Scope areas owned by the core; no service may declare scopes in them.
CORE_SCOPE_AREAS = frozenset(
    {
        "openid",
        "profile",
        "citizens",
        "cards",
        "card_auth",
        "wallet",
        "ledger",
        "audit",
        "admin",
        "pki",
        "me",
        "phone",
        "oauth",
        "accounts",
    }
)


class PluginError(ConfigError):
    """A service plugin breaks the contract; start-up stops."""


@dataclass(frozen=True)
class ServicePlugin:
    """What a service brings to the platform.

    ``name`` is at once the package, blueprint, scope prefix, table prefix and Alembic branch
    label. The blueprint is mounted at ``/api/v1/<name with dashes>``.
    """

    name: str
    blueprint: Blueprint
    scopes: dict[str, str] = field(default_factory=dict)
    models: str | None = None
    migrations: Path | None = None
    config_defaults: dict[str, Any] = field(default_factory=dict)
    init_app: Callable[[Flask], None] | None = None

    @property
    def url_prefix(self) -> str:
        """Where the service's routes live."""
        return "/api/v1/" + self.name.replace("_", "-")


def _load_entry(entry: str) -> object:
    """Resolve one allow-list entry: an entry point name first, else a module path."""
    matches = entry_points(group=ENTRY_POINT_GROUP, name=entry)
    if matches:
        return next(iter(matches)).load()
    try:
        module = importlib.import_module(entry)
    except ImportError as exc:
        raise PluginError(
            f"service {entry!r}: no entry point of that name in group {ENTRY_POINT_GROUP!r} "
            f"and no module to import ({exc})"
        ) from exc
    if not hasattr(module, "service"):
        raise PluginError(f"service {entry!r}: module does not export `service`")
    return module.service


def _tables_of(models_module: str) -> list[str]:
    """Tables mapped anywhere in the service's package (models may live in several modules)."""
    from citizen_card.db import Base

    package = models_module.rsplit(".", 1)[0]
    names: list[str] = []
    for mapper in Base.registry.mappers:
        module = mapper.class_.__module__
        if module == package or module.startswith(package + "."):
            names.extend(t.name for t in mapper.tables)
    return names


def discover(entries: list[str]) -> list[ServicePlugin]:
    """Load and validate every allow-listed service; raise PluginError on the first breach."""
    plugins: list[ServicePlugin] = []
    names: dict[str, str] = {}
    scopes: dict[str, str] = {}
    for entry in entries:
        plugin = _load_entry(entry)
        if not isinstance(plugin, ServicePlugin):
            raise PluginError(
                f"service {entry!r}: `service` is a {type(plugin).__name__}, not a ServicePlugin"
            )
        where = f"service {entry!r} ({plugin.name!r})"
        if not _NAME_RE.match(plugin.name):
            raise PluginError(f"{where}: name must match {_NAME_RE.pattern}")
        if plugin.name in names:
            raise PluginError(
                f"{where}: duplicate service name, also declared by {names[plugin.name]!r}"
            )
        if plugin.name in CORE_SCOPE_AREAS:
            raise PluginError(f"{where}: name is reserved by the core")
        if plugin.blueprint.name != plugin.name:
            raise PluginError(
                f"{where}: blueprint is named {plugin.blueprint.name!r}, must be the service name"
            )
        for scope in plugin.scopes:
            if not _SCOPE_RE.match(scope) or not scope.startswith(plugin.name + ":"):
                raise PluginError(f"{where}: scope {scope!r} must be '{plugin.name}:<verb>'")
            if scope in scopes:
                raise PluginError(
                    f"{where}: duplicate scope {scope!r}, also declared by {scopes[scope]!r}"
                )
            scopes[scope] = entry
        if plugin.models:
            try:
                importlib.import_module(plugin.models)
            except ImportError as exc:
                raise PluginError(
                    f"{where}: cannot import models {plugin.models!r}: {exc}"
                ) from exc
            for table in _tables_of(plugin.models):
                if not table.startswith(plugin.name + "_"):
                    raise PluginError(f"{where}: table {table!r} must be prefixed '{plugin.name}_'")
        if plugin.migrations is not None and not Path(plugin.migrations).is_dir():
            raise PluginError(f"{where}: migrations folder {plugin.migrations} does not exist")
        names[plugin.name] = entry
        plugins.append(plugin)
    return plugins


def init_services(app: Flask, api: Any) -> list[ServicePlugin]:
    """Load services in the contract's order: config defaults, models, blueprint, scopes."""
    plugins = discover(list(app.config["SERVICES"]))
    for plugin in plugins:
        for key, value in plugin.config_defaults.items():
            app.config.setdefault(key, value)
        api.register_blueprint(plugin.blueprint, url_prefix=plugin.url_prefix)
        if plugin.init_app is not None:
            plugin.init_app(app)
        log.info("service enabled", extra={"service": plugin.name})
    app.extensions["citizen_card_services"] = {p.name: p for p in plugins}
    from citizen_card.oauth.scopes import CORE_SCOPES

    app.config["OAUTH2_SCOPES_SUPPORTED"] = sorted(
        set(CORE_SCOPES) | {s for p in plugins for s in p.scopes}
    )
    return plugins


def enabled_services(app: Flask) -> dict[str, ServicePlugin]:
    """The services enabled in app, by name."""
    services: dict[str, ServicePlugin] = app.extensions.get("citizen_card_services", {})
    return services
