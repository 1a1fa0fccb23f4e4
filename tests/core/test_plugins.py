"""The service plugin contract: loading, validation, entry points, migrations."""

from __future__ import annotations

import textwrap

import pytest

from citizen_card.plugins import PluginError
from citizen_card.plugins import discover
from citizen_card.plugins import enabled_services

GOOD = "tests.plugins.hello_service"


def write_module(tmp_path, monkeypatch, name: str, body: str) -> str:
    """A real importable module on sys.path, as a service package would be."""
    # Unique per test: sys.modules would otherwise hand back an earlier test's module.
    name = f"{name}_{abs(hash(str(tmp_path))) % 10**8}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(body))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


PLUGIN_HEAD = "from citizen_card.public import Blueprint, ServicePlugin\n"


def test_test_plugin_is_mounted_with_its_scopes_and_config(app):
    services = enabled_services(app)
    assert list(services) == ["hello_service", "transit"]
    assert app.config["HELLO_SERVICE_MAX_LENGTH"] == 40
    assert {"hello_service:read", "hello_service:write"} <= set(
        app.config["OAUTH2_SCOPES_SUPPORTED"]
    )
    rules = {r.rule for r in app.url_map.iter_rules()}
    assert "/api/v1/hello-service/greetings" in rules


def test_entry_point_is_loaded(tmp_path, monkeypatch):
    dist = tmp_path / "hello_dist-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hello-dist\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[citizen_card.services]\ngreeter = tests.plugins.hello_service:service\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    [plugin] = discover(["greeter"])
    assert plugin.name == "hello_service"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("service = 42\n", "is a int, not a ServicePlugin"),
        ("x = 1\n", "does not export `service`"),
        (
            PLUGIN_HEAD + "service = ServicePlugin(name='Bad-Name',"
            " blueprint=Blueprint('Bad-Name', __name__))\n",
            "name must match",
        ),
        (
            PLUGIN_HEAD + "service = ServicePlugin(name='bad_scope',"
            " blueprint=Blueprint('bad_scope', __name__), scopes={'other:read': 'x'})\n",
            "scope 'other:read' must be 'bad_scope:<verb>'",
        ),
        (
            PLUGIN_HEAD
            + "service = ServicePlugin(name='wrong_bp', blueprint=Blueprint('other', __name__))\n",
            "blueprint is named 'other'",
        ),
        (
            PLUGIN_HEAD
            + "service = ServicePlugin(name='cards', blueprint=Blueprint('cards', __name__))\n",
            "reserved by the core",
        ),
        (
            PLUGIN_HEAD + "from pathlib import Path\n"
            "service = ServicePlugin(name='no_mig', blueprint=Blueprint('no_mig', __name__),"
            " migrations=Path('/nonexistent'))\n",
            "migrations folder /nonexistent does not exist",
        ),
    ],
)
def test_bad_plugins_stop_startup(tmp_path, monkeypatch, body, message):
    name = write_module(tmp_path, monkeypatch, "bad_plugin_mod", body)
    with pytest.raises(PluginError) as info:
        discover([name])
    assert f"service '{name}'" in str(info.value)
    assert message in str(info.value)


def test_table_without_prefix_stops_startup(tmp_path, monkeypatch):
    models = write_module(
        tmp_path,
        monkeypatch,
        "unprefixed_models",
        """
        from sqlalchemy.orm import Mapped, mapped_column
        from citizen_card.public import Base
        class Thing(Base):
            __tablename__ = "things"
            id: Mapped[int] = mapped_column(primary_key=True)
        """,
    )
    plugin = write_module(
        tmp_path,
        monkeypatch,
        "unprefixed",
        PLUGIN_HEAD + "service = ServicePlugin(name='unprefixed', "
        f"blueprint=Blueprint('unprefixed', __name__), models='{models}')\n",
    )
    try:
        with pytest.raises(PluginError, match="table 'things' must be prefixed 'unprefixed_'"):
            discover([plugin])
    finally:
        # Keep later migration checks blind to this throwaway table.
        from citizen_card.db import Base

        Base.metadata.remove(Base.metadata.tables["things"])


def test_duplicate_name(tmp_path, monkeypatch):
    twin = write_module(
        tmp_path,
        monkeypatch,
        "hello_twin",
        PLUGIN_HEAD + "service = ServicePlugin(name='hello_service', "
        "blueprint=Blueprint('hello_service', __name__))\n",
    )
    with pytest.raises(PluginError, match="duplicate service name"):
        discover([GOOD, twin])


def test_unknown_entry(tmp_path):
    with pytest.raises(PluginError, match="no entry point of that name"):
        discover(["services.does_not_exist"])


def test_bad_plugin_ends_the_real_start_with_a_message(tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", "from citizen_card import create_app; create_app()"],
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": ".",
            "CITIZEN_CARD_INSTANCE_PATH": str(tmp_path),
            "CITIZEN_CARD_SERVICES": '["services.does_not_exist"]',
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "citizen_card: service 'services.does_not_exist'" in result.stderr
    assert "Traceback" not in result.stderr
