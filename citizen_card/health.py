"""Liveness and readiness probes (public, outside /api)."""

from __future__ import annotations

from functools import cache

from alembic.script import ScriptDirectory
from flask import Blueprint
from flask import Flask
from flask import current_app
from flask import jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from citizen_card.extensions import db

blp = Blueprint("health", __name__)


@cache
def _expected_heads(app_id: int) -> frozenset[str]:
    # Scripts do not change while the process runs; scan them once.
    config = current_app.extensions["migrate"].migrate.get_config()
    return frozenset(ScriptDirectory.from_config(config).get_heads())


def expected_heads(app: Flask) -> frozenset[str]:
    """Every Alembic head the code expects (core and enabled services)."""
    return _expected_heads(id(app))


@blp.get("/healthz")
def healthz():  # type: ignore[no-untyped-def]
    """The process is up and serving."""
    return jsonify(status="ok")


@blp.get("/readyz")
def readyz():  # type: ignore[no-untyped-def]
    """Ready: the database answers and its schema is at the migrations' heads."""
    checks: dict[str, str] = {}
    ready = True
    try:
        current = {
            row[0] for row in db.session.execute(text("SELECT version_num FROM alembic_version"))
        }
        checks["database"] = "ok"
        missing = expected_heads(current_app._get_current_object()) - current  # type: ignore[attr-defined]
        if missing:
            ready = False
            checks["migrations"] = (
                f"pending: run `flask db upgrade heads` ({len(missing)} head(s) behind)"
            )
        else:
            checks["migrations"] = "ok"
    except SQLAlchemyError as exc:
        ready = False
        checks["database"] = f"unavailable: {type(exc).__name__}"
    finally:
        db.session.rollback()
    response = jsonify(status="ok" if ready else "unavailable", checks=checks)
    response.status_code = 200 if ready else 503
    return response
