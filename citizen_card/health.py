"""Liveness and readiness probes (public, outside /api)."""

from __future__ import annotations

from functools import cache

from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError as AlembicError
from flask import Blueprint
from flask import Flask
from flask import current_app
from flask import jsonify
from sqlalchemy import inspect
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from citizen_card.extensions import db

blp = Blueprint("health", __name__)


@cache
def _scripts(app_id: int) -> ScriptDirectory:
    # Scripts do not change while the process runs; scan them once.
    config = current_app.extensions["migrate"].migrate.get_config()
    return ScriptDirectory.from_config(config)


def missing_heads(app: Flask, current: set[str]) -> set[str]:
    """Heads of the code's migrations (core and enabled services) the database lacks.

    A head another branch depends on is "effective", not stored in alembic_version, so
    compare against everything the stored revisions imply.
    """
    scripts = _scripts(id(app))
    applied = {rev.revision for rev in scripts.iterate_revisions(tuple(current), "base")}
    return set(scripts.get_heads()) - applied


@blp.get("/healthz")
def healthz():  # type: ignore[no-untyped-def]
    """The process is up and serving."""
    return jsonify(status="ok")


def _migration_problem(current: set[str]) -> str | None:
    try:
        missing = missing_heads(current_app._get_current_object(), current)  # type: ignore[attr-defined]
    except (AlembicError, RevisionError):
        return "the database has revisions this code does not know (older code?)"
    if missing:
        return f"pending: run `flask db upgrade heads` ({len(missing)} head(s) behind)"
    return None


@blp.get("/readyz")
def readyz():  # type: ignore[no-untyped-def]
    """Ready: the database answers and its schema is at the migrations' heads."""
    checks: dict[str, str] = {}
    try:
        db.session.execute(text("SELECT 1"))
        checks["database"] = "ok"
        if inspect(db.session.connection()).has_table("alembic_version"):
            rows = db.session.execute(text("SELECT version_num FROM alembic_version"))
            checks["migrations"] = _migration_problem({row[0] for row in rows}) or "ok"
        else:
            checks["migrations"] = "no schema: run `flask db upgrade heads`"
    except SQLAlchemyError as exc:
        checks.setdefault("database", f"unavailable: {type(exc).__name__}")
    finally:
        db.session.rollback()
    ready = checks.get("database") == "ok" and checks.get("migrations") == "ok"
    response = jsonify(status="ok" if ready else "unavailable", checks=checks)
    response.status_code = 200 if ready else 503
    return response
