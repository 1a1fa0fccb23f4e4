"""A live HTTP server for driving the OAuth endpoints with third-party clients."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import flask_migrate
import pytest
import sqlalchemy as sa
from flask import Flask
from werkzeug.serving import make_server

from citizen_card import create_app
from citizen_card.extensions import db
from tests.conftest import _reset_postgres
from tests.conftest import make_test_config


@dataclass
class Live:
    """A running server: its base URL and its app (for setting up data directly)."""

    url: str
    app: Flask


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def live(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """The app on its own database, served over real HTTP on a free loopback port."""
    tmp: Path = tmp_path_factory.mktemp("live")
    if database_url.startswith("postgresql"):
        url = sa.make_url(database_url)
        url = url.set(database=f"{url.database}_live")
        _reset_postgres(url)
        own_url = url.render_as_string(hide_password=False)
    else:
        own_url = f"sqlite:///{tmp / 'live.db'}"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    app = create_app(make_test_config(tmp, own_url, OAUTH2_ISSUER=base))
    with app.app_context():
        flask_migrate.upgrade(revision="heads")
        db.session.remove()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Live(base, app)
    finally:
        server.shutdown()
        thread.join(10)
        with app.app_context():
            db.engine.dispose()
