"""Shared fixtures: one app per session on SQLite or PostgreSQL, each test rolled back.

The suite runs on SQLite by default and on PostgreSQL when TEST_DATABASE_URL is set
(``.ci/run`` does both). The schema is built by running the real migrations.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import flask_migrate
import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from citizen_card import create_app
from citizen_card.config import normalize_database_url
from citizen_card.extensions import db

TEST_SERVICES = ["tests.plugins.hello_service", "services.transit"]


def _postgres_url() -> str | None:
    url = os.environ.get("TEST_DATABASE_URL")
    return normalize_database_url(url) if url else None


def _reset_postgres(url: str | sa.URL) -> None:
    """Create the test database if needed and empty its public schema."""
    target = sa.make_url(url)
    admin = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.scalar(
            sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": target.database}
        )
        if not exists:
            conn.exec_driver_sql(f'CREATE DATABASE "{target.database}"')
    admin.dispose()
    engine = sa.create_engine(target, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql("DROP SCHEMA IF EXISTS public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    engine.dispose()


def pytest_configure(config: pytest.Config) -> None:
    """In CI's PostgreSQL pass, refuse to run (and silently skip) without PostgreSQL."""
    if os.environ.get("REQUIRE_POSTGRES") == "1" and not _postgres_url():
        raise pytest.UsageError("REQUIRE_POSTGRES=1 but TEST_DATABASE_URL is not set")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """In the PostgreSQL pass every selected test must run: a skip there is a failure."""
    outcome = yield
    report = outcome.get_result()
    if (
        report.skipped
        and os.environ.get("REQUIRE_POSTGRES") == "1"
        and not hasattr(report, "wasxfail")
    ):
        report.outcome = "failed"
        report.longrepr = f"skipped in the PostgreSQL pass (REQUIRE_POSTGRES=1): {report.longrepr}"


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The test database: PostgreSQL from TEST_DATABASE_URL, else a fresh SQLite file."""
    url = _postgres_url()
    if url:
        _reset_postgres(url)
        return url
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"


def make_test_config(tmp: Path, database_url: str, **overrides: object) -> dict[str, object]:
    """A complete test configuration; secrets live in the test's temporary folder."""
    config: dict[str, object] = {
        "TESTING": True,
        "PROPAGATE_EXCEPTIONS": False,
        "SECRET_KEY": "test-secret-key-" + "x" * 32,
        "SQLALCHEMY_DATABASE_URI": database_url,
        # Keep every file a test app writes (demo keys, card files) out of the checkout.
        "INSTANCE_PATH": str(tmp),
        "PII_KEYRING_FILE": str(tmp / "pii-keyring.json"),
        "OAUTH2_SIGNING_KEYS_FILE": str(tmp / "signing-keys.json"),
        "CARD_ISSUER_KEY_FILE": str(tmp / "issuer-ca-key.pem"),
        "CARD_ISSUER_CERT_FILE": str(tmp / "issuer-ca.pem"),
        # The test client's host, so issuer-derived URLs resolve against the app itself.
        "OAUTH2_ISSUER": "http://localhost",
        "SERVICES": list(TEST_SERVICES),
    }
    config.update(overrides)
    return config


@pytest.fixture(scope="session")
def app(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """The app, its schema built by the migrations (never create_all)."""
    tmp = tmp_path_factory.mktemp("instance")
    application = create_app(make_test_config(tmp, database_url))
    with application.app_context():
        flask_migrate.upgrade(revision="heads")
        db.session.remove()
    yield application
    with application.app_context():
        db.engine.dispose()


@pytest.fixture(autouse=True)
def _isolate(request: pytest.FixtureRequest) -> Iterator[None]:
    """Run each test inside an outer transaction that is rolled back afterwards.

    App code may commit and roll back freely: its session joins the outer transaction
    through SAVEPOINTs. Tests that do not use the app skip this entirely.
    """
    if "app" not in request.fixturenames or request.node.get_closest_marker("no_isolation"):
        yield
        return
    application: Flask = request.getfixturevalue("app")
    with application.app_context():
        engines = db.engines
        engine = engines[None]
        connection = engine.connect()
        outer = connection.begin()
        engines[None] = connection  # type: ignore[assignment]
        factory = db.session.session_factory
        factory.kw["join_transaction_mode"] = "create_savepoint"
        try:
            yield
            if not request.node.get_closest_marker("books_tampered"):
                # Whatever a test did with money, the books must still balance.
                from citizen_card.ledger.actions import verify

                db.session.remove()
                assert verify() == [], "ledger verify failed after this test"
        finally:
            db.session.remove()
            factory.kw.pop("join_transaction_mode", None)
            engines[None] = engine
            if outer.is_active:
                outer.rollback()
            connection.close()


@pytest.fixture()
def committed_app(
    database_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Flask]:
    """A second app on its own freshly migrated database, where commits really commit.

    For tests that need several connections to see each other's work (concurrency, gunicorn,
    CLI processes). Slower than the rolled-back ``app``: use only where needed.
    """
    if database_url.startswith("postgresql"):
        url = sa.make_url(database_url)
        url = url.set(database=f"{url.database}_committed")
        _reset_postgres(url)
        own_url = url.render_as_string(hide_password=False)
    else:
        own_url = f"sqlite:///{tmp_path / 'committed.db'}"
    application = create_app(make_test_config(tmp_path, own_url))
    with application.app_context():
        flask_migrate.upgrade(revision="heads")
        db.session.remove()
    yield application
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture()
def client(app: Flask) -> FlaskClient:
    """A test client of the session app."""
    return app.test_client()


@pytest.fixture()
def bearer(app: Flask, client: FlaskClient):  # type: ignore[no-untyped-def]
    """bearer(*scopes, kind="partner") -> headers with a real access token.

    Registers a client for exactly those scopes and asks /oauth/token for a token, so the
    token is minted and later verified by the project's own code, with no shortcut.
    """
    from base64 import b64encode

    from citizen_card.audit.actions import Actor
    from citizen_card.oauth.clients import create_client

    def mint(
        *scopes: str, kind: str = "partner", organisation: str = "Test Org", site: str | None = None
    ) -> dict[str, str]:
        with app.app_context():
            registered, secret = create_client(
                name=f"test {kind}",
                kind=kind,
                organisation=organisation,
                scopes=list(scopes),
                actor=Actor.system("test"),
                site=site,
            )
            client_id = registered.client_id
        basic = b64encode(f"{client_id}:{secret}".encode()).decode()
        response = client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials", "scope": " ".join(scopes)},
            headers={"Authorization": f"Basic {basic}"},
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        return {"Authorization": f"Bearer {response.get_json()['access_token']}"}

    return mint


@pytest.fixture()
def hello_client(app: Flask, bearer) -> FlaskClient:  # type: ignore[no-untyped-def]
    """A test client that sends a token for the test plugin's scopes on every request."""
    headers = bearer("hello_service:read", "hello_service:write")
    authed = app.test_client()
    authed.environ_base["HTTP_AUTHORIZATION"] = headers["Authorization"]
    return authed


@pytest.fixture()
def app_ctx(app: Flask) -> Iterator[Flask]:
    """An application context for tests that call actions directly."""
    with app.app_context():
        yield app


def is_postgres(app: Flask) -> bool:
    """True when the suite runs on PostgreSQL."""
    return str(app.config["SQLALCHEMY_DATABASE_URI"]).startswith("postgresql")
