"""Probes, request ids and JSON logs."""

from __future__ import annotations

import json
import logging

import sqlalchemy as sa

from citizen_card.extensions import db
from citizen_card.logs import JsonFormatter


def test_readyz_ok_at_head(client):
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.get_json()["checks"] == {"database": "ok", "migrations": "ok"}


def test_readyz_503_when_migrations_are_behind(app, client):
    with app.app_context():
        db.session.execute(sa.text("DELETE FROM alembic_version"))
        db.session.execute(sa.text("INSERT INTO alembic_version VALUES ('78619eb7a5d3')"))
        db.session.commit()
    r = client.get("/readyz")
    assert r.status_code == 503
    body = r.get_json()
    assert body["checks"]["database"] == "ok"
    assert "flask db upgrade heads" in body["checks"]["migrations"]


def test_readyz_503_when_database_is_unreachable(tmp_path):
    from citizen_card import create_app
    from tests.conftest import make_test_config

    url = "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1"
    app = create_app(make_test_config(tmp_path, url))
    r = app.test_client().get("/readyz")
    assert r.status_code == 503
    assert r.get_json()["checks"]["database"].startswith("unavailable")


def test_request_id_generated_and_echoed(client):
    r = client.get("/healthz")
    assert len(r.headers["X-Request-ID"]) == 32


def test_request_id_honoured(client):
    r = client.get("/healthz", headers={"X-Request-ID": "gate-17:abc"})
    assert r.headers["X-Request-ID"] == "gate-17:abc"


def test_hostile_request_id_replaced(client):
    r = client.get("/healthz", headers={"X-Request-ID": "x\u2028<script>" * 3})
    assert r.headers["X-Request-ID"] != "x\u2028<script>" * 3
    assert len(r.headers["X-Request-ID"]) == 32


def test_json_log_line_carries_request_id(app):
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "tap %s", ("ok",), None)
    with app.test_request_context("/"):
        from flask import g

        g.request_id = "rid-1"
        line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "tap ok"
    assert line["request_id"] == "rid-1"
    assert line["level"] == "INFO"


def test_readyz_503_before_any_migration(tmp_path):
    from citizen_card import create_app
    from tests.conftest import make_test_config

    app = create_app(make_test_config(tmp_path, f"sqlite:///{tmp_path / 'empty.db'}"))
    r = app.test_client().get("/readyz")
    assert r.status_code == 503
    assert r.get_json()["checks"] == {
        "database": "ok",
        "migrations": "no schema: run `flask db upgrade heads`",
    }


def test_readyz_503_when_database_is_ahead_of_the_code(app, client):
    with app.app_context():
        db.session.execute(sa.text("INSERT INTO alembic_version VALUES ('ffffffffffff')"))
        db.session.commit()
    r = client.get("/readyz")
    assert r.status_code == 503
    assert "does not know" in r.get_json()["checks"]["migrations"]
