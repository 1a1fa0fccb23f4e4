"""Citizen card platform: the core application factory."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from flask import Flask
from flask import send_from_directory

from citizen_card.config import ConfigError
from citizen_card.config import load_config


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app: config, extensions, error shape, core blueprints, services.

    Started for real (no test_config), a configuration problem ends the process with the
    message and exit status 2 instead of a traceback.
    """
    if test_config is not None:
        return _build(test_config)
    try:
        return _build(None)
    except ConfigError as exc:
        print(f"citizen_card: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _build(test_config: dict[str, Any] | None) -> Flask:
    from citizen_card import cli
    from citizen_card import errors
    from citizen_card import health
    from citizen_card import logs
    from citizen_card import migrations
    from citizen_card import pii
    from citizen_card.cards import pki as card_pki
    from citizen_card.db import configure_sqlite
    from citizen_card.extensions import db
    from citizen_card.oauth import clients as oauth_clients
    from citizen_card.oauth import tokens as oauth_tokens

    instance = (test_config or {}).get("INSTANCE_PATH") or os.environ.get(
        "CITIZEN_CARD_INSTANCE_PATH"
    )
    app = Flask(__name__, instance_path=instance or None, instance_relative_config=True)
    load_config(app, test_config)
    # Problem documents read best in RFC order (type, title, status, …), not sorted.
    app.json.sort_keys = False  # type: ignore[attr-defined]
    logs.init_app(app)
    errors.init_app(app)

    db.init_app(app)
    with app.app_context():
        configure_sqlite(db.engine)
    migrations.init_app(app)
    pii.init_app(app)
    oauth_tokens.init_app(app)
    oauth_clients.init_app(app)
    card_pki.init_app(app)

    # One Api per app: flask-smorest keeps a reference to the last app it saw.
    api = errors.ProblemApi(app)
    _serve_swagger_assets(app)
    from citizen_card import core_models  # noqa: F401  (registers core tables)
    from citizen_card.plugins import init_services

    init_services(app, api)
    _init_oauth(app, api)
    app.register_blueprint(health.blp)
    cli.init_app(app)
    app.extensions["citizen_card_api"] = api
    return app


def _init_oauth(app: Flask, api: object) -> None:
    # After the services: Authlib reads OAUTH2_SCOPES_SUPPORTED when it is initialised.
    from citizen_card.oauth import server
    from citizen_card.oauth import views

    server.init_app(app)
    app.register_blueprint(views.oauth_blp)
    api.register_blueprint(views.admin_blp)  # type: ignore[attr-defined]
    api.register_blueprint(views.me_blp)  # type: ignore[attr-defined]
    from citizen_card.oauth import accounts as oauth_accounts
    from citizen_card.oauth import consents as oauth_consents

    api.register_blueprint(oauth_consents.blp)  # type: ignore[attr-defined]
    api.register_blueprint(oauth_accounts.blp)  # type: ignore[attr-defined]
    from citizen_card.cards import views as card_views
    from citizen_card.citizens.views import blp as citizens_blp

    api.register_blueprint(citizens_blp)  # type: ignore[attr-defined]
    from citizen_card.ledger.views import blp as wallets_blp

    for blp in (card_views.cards_blp, card_views.pki_blp, card_views.card_auth_blp, wallets_blp):
        api.register_blueprint(blp)  # type: ignore[attr-defined]
    issuer = app.config["OAUTH2_ISSUER"]
    api.spec.components.security_scheme(  # type: ignore[attr-defined]
        "oauth2",
        {
            "type": "oauth2",
            "description": "Access tokens from /oauth/token (see docs/auth.md)",
            "flows": {
                "clientCredentials": {
                    "tokenUrl": f"{issuer}/oauth/token",
                    "scopes": {s: s for s in app.config["OAUTH2_SCOPES_SUPPORTED"]},
                },
                "authorizationCode": {
                    "authorizationUrl": f"{issuer}/oauth/authorize",
                    "tokenUrl": f"{issuer}/oauth/token",
                    "refreshUrl": f"{issuer}/oauth/token",
                    "scopes": {s: s for s in app.config["OAUTH2_SCOPES_SUPPORTED"]},
                },
            },
        },
    )


def _serve_swagger_assets(app: Flask) -> None:
    # Swagger UI's files ship inside flask-swagger-ui, so /api/docs needs no CDN.
    import flask_swagger_ui

    dist = Path(flask_swagger_ui.__file__).parent / "dist"

    @app.get("/api/docs/static/<path:filename>")
    def swagger_static(filename: str):  # type: ignore[no-untyped-def]
        return send_from_directory(dist, filename, max_age=86400)
