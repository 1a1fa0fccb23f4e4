"""A live HTTP server for driving the OAuth endpoints with third-party clients."""

from __future__ import annotations

import html
import itertools
import random
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urljoin
from urllib.parse import urlsplit

import flask_migrate
import pytest
import requests
import sqlalchemy as sa
from flask import Flask
from werkzeug.serving import make_server

from citizen_card import create_app
from citizen_card.audit.actions import Actor
from citizen_card.citizens import actions as citizen_actions
from citizen_card.citizens.national_id import make_national_id
from citizen_card.extensions import db
from citizen_card.oauth import accounts
from citizen_card.oauth.clients import create_client
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


# -- residents, staff and a browser for the code flow (test_code_flow, test_throttle, …) -------
# Cheap argon2id for tests (production's cost is checked in config validation).
FAST_HASHING = {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}
PASSWORD = "correct horse 42"
REDIRECT_URI = "http://127.0.0.1/cb"
SYSTEM = Actor.system("test")
_ids = itertools.count(random.randrange(500))


@dataclass
class Person:
    """A resident (login = national ID) or a staff member (login = username)."""

    login: str
    password: str
    account_id: int
    citizen_id: int | None = None


def new_national_id() -> str:
    """A valid national ID unlikely to be registered already."""
    born = date(1950, 1, 1).toordinal() + random.randrange(18000)
    return make_national_id("110105", date.fromordinal(born), next(_ids) % 500, "F")


def make_resident(password: str | None = PASSWORD, **citizen: Any) -> Person:
    """Register a citizen and (unless password is None) set their password (app context)."""
    data = {
        "national_id": new_national_id(),
        "name": "王小明",
        "phone": "13912345678",
        "district": "110105",
        "residence_type": "registered",
        "insurance_scheme": "employee",
        "employment_status": "employed",
    }
    data.update(citizen)
    row = citizen_actions.create_citizen(data, actor=SYSTEM)
    if password is None:
        account = accounts.create_resident_account(row.id, actor=SYSTEM)
    else:
        account = accounts.set_resident_password(row.id, password, actor=SYSTEM)
    return Person(data["national_id"], password or "", account.id, row.id)


def make_staff(role: str = "clerk", station: str = "station-7") -> Person:
    """A staff account with a fresh username (app context)."""
    username = f"clerk{random.randrange(10**9)}"
    account = accounts.create_staff_account(
        username,
        role=role,
        station=station,
        password=PASSWORD,
        actor=SYSTEM,
        display_name="李科员",
    )
    return Person(username, PASSWORD, account.id)


def make_app_client(
    scopes: str = "openid profile phone",
    *,
    kind: str = "partner",
    organisation: str = "City App",
    public: bool = True,
    refresh: bool = True,
    redirect_uris: tuple[str, ...] = (REDIRECT_URI,),
) -> tuple[str, str | None]:
    """Register a code-flow client (app context); returns client_id and secret."""
    grants = ["authorization_code", "refresh_token"] if refresh else ["authorization_code"]
    client, secret = create_client(
        name=f"{organisation} app",
        kind=kind,
        organisation=organisation,
        scopes=scopes.split(),
        grant_types=grants,
        auth_method="none" if public else "client_secret_basic",
        redirect_uris=list(redirect_uris),
        site="station-7" if kind == "station" else None,
        actor=SYSTEM,
    )
    return client.client_id, secret


_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


def hidden_fields(page: str) -> dict[str, str]:
    """A page's hidden form fields, unescaped."""
    return {html.unescape(k): html.unescape(v) for k, v in _HIDDEN.findall(page)}


class Browser:
    """A user agent for our sign-in pages: keeps the session cookie, fills the forms."""

    def __init__(self, base: str, language: str = "zh-CN") -> None:
        self.base = base
        self.http = requests.Session()
        self.http.headers["Accept-Language"] = language

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        """GET without following redirects."""
        return self.http.get(urljoin(self.base, url), allow_redirects=False, timeout=10, **kwargs)

    def post(self, url: str, data: dict[str, str], **kwargs: Any) -> requests.Response:
        """POST a form without following redirects."""
        return self.http.post(
            urljoin(self.base, url), data=data, allow_redirects=False, timeout=10, **kwargs
        )

    def login(self, page: requests.Response, person: Person, password: str | None = None):
        """Submit the login form shown on page."""
        fields = hidden_fields(page.text)
        fields.update(login=person.login, password=password or person.password)
        return self.post("/oauth/login", fields)

    def consent(self, page: requests.Response, decision: str = "allow") -> requests.Response:
        """Answer the consent form shown on page."""
        return self.post("/oauth/consent", {**hidden_fields(page.text), "decision": decision})

    def run(
        self, url: str, person: Person | None = None, decision: str = "allow"
    ) -> requests.Response:
        """Follow an authorization request through login and consent to its final answer.

        Returns the response that leaves our server (a redirect to the client) or a page we
        cannot answer (an error, or a login form when no person is given).
        """
        response = self.get(url)
        for _ in range(10):
            if response.status_code in (302, 303):
                location = response.headers["Location"]
                if not location.startswith("/") and not location.startswith(self.base):
                    return response
                response = self.get(location)
            elif response.status_code == 200 and 'action="/oauth/login"' in response.text:
                if person is None:
                    return response
                response = self.login(response, person)
            elif response.status_code == 200 and 'action="/oauth/consent"' in response.text:
                response = self.consent(response, decision)
            else:
                return response
        raise AssertionError("too many hops")


def callback_params(response: requests.Response) -> dict[str, str]:
    """The query of a redirect to the client's redirect URI."""
    assert response.status_code == 302, (response.status_code, response.text[:500])
    location = response.headers["Location"]
    assert location.startswith(REDIRECT_URI), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


@pytest.fixture(scope="module")
def fast_live(live: Live) -> Live:
    """The live server with cheap password hashing, for modules that sign people in."""
    live.app.config["PASSWORD_HASHING"] = dict(FAST_HASHING)
    return live


@pytest.fixture()
def fast_app(app: Flask, monkeypatch: pytest.MonkeyPatch) -> Flask:
    """The session app with cheap password hashing for one test."""
    monkeypatch.setitem(app.config, "PASSWORD_HASHING", dict(FAST_HASHING))
    return app
