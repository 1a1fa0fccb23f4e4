"""Residents and staff sign in: authorization code + PKCE + OpenID Connect, over real HTTP.

The client side is Authlib's requests OAuth2Session (as a partner's app would use it), the
browser is a requests session filling our forms, and every JWT is verified with PyJWT against
/oauth/jwks only.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import timedelta

import jwt as pyjwt
import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update

from citizen_card.audit.models import AuditEvent
from citizen_card.citizens import actions as citizen_actions
from citizen_card.extensions import db
from citizen_card.oauth import accounts
from citizen_card.oauth.clients import set_client_status
from citizen_card.oauth.models import Account
from citizen_card.oauth.models import AuthorizationCode
from citizen_card.oauth.models import Consent
from citizen_card.oauth.models import RefreshToken
from citizen_card.oauth.tokens import pairwise_subject
from tests.oauth.conftest import PASSWORD
from tests.oauth.conftest import REDIRECT_URI
from tests.oauth.conftest import SYSTEM
from tests.oauth.conftest import Browser
from tests.oauth.conftest import callback_params
from tests.oauth.conftest import hidden_fields
from tests.oauth.conftest import make_app_client
from tests.oauth.conftest import make_resident
from tests.oauth.conftest import make_staff


@pytest.fixture(scope="module", autouse=True)
def _cheap_hashing(fast_live):
    """Every test here signs people in: cheap password hashing on the live server."""


def setup(live, fn, *args, **kwargs):
    with live.app.app_context():
        return fn(*args, **kwargs)


class App:
    """A partner's app: registered client + Authlib OAuth2Session, one authorization at a time."""

    def __init__(self, live, scopes="openid profile phone", **kwargs):
        self.live = live
        self.client_id, self.secret = setup(live, make_app_client, scopes, **kwargs)
        self.scopes = scopes
        self.verifier = generate_token(48)
        self.nonce = secrets.token_urlsafe(12)
        self.session = self._session()

    def _session(self):
        method = "none" if self.secret is None else "client_secret_basic"
        return OAuth2Session(
            self.client_id,
            self.secret,
            scope=self.scopes,
            redirect_uri=REDIRECT_URI,
            code_challenge_method="S256",
            token_endpoint_auth_method=method,
        )

    def authorization_url(self, **extra):
        self.verifier = generate_token(48)
        self.nonce = secrets.token_urlsafe(12)  # a nonce is single-use per client
        url, self.state = self.session.create_authorization_url(
            f"{self.live.url}/oauth/authorize",
            code_verifier=self.verifier,
            nonce=self.nonce,
            **extra,
        )
        return url

    def exchange(self, callback):
        location = callback.headers["Location"]
        return self.session.fetch_token(
            f"{self.live.url}/oauth/token",
            authorization_response=location,
            code_verifier=self.verifier,
        )

    def token_request(self, **data):
        """A raw token request (errors come back as responses, not exceptions)."""
        auth = (self.client_id, self.secret) if self.secret else None
        if not self.secret:
            data["client_id"] = self.client_id
        return requests.post(f"{self.live.url}/oauth/token", data=data, auth=auth, timeout=10)

    def refresh(self, refresh_token):
        return self.token_request(grant_type="refresh_token", refresh_token=refresh_token)

    def sign_in(self, browser, person, **extra):
        """Run the whole flow; the token response."""
        return self.exchange(browser.run(self.authorization_url(**extra), person))


def verify(live, token, *, audience, typ):
    key = pyjwt.PyJWKClient(f"{live.url}/oauth/jwks").get_signing_key_from_jwt(token)
    assert pyjwt.get_unverified_header(token)["typ"] == typ
    return pyjwt.decode(token, key.key, algorithms=["ES256"], audience=audience, issuer=live.url)


def bearer_get(live, path, token, **kwargs):
    return requests.get(
        live.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=10, **kwargs
    )


# -- the happy path ----------------------------------------------------------------------------
def test_resident_signs_in_consents_and_the_app_gets_verified_tokens(live):
    person = setup(live, make_resident)
    app = App(live)
    browser = Browser(live.url)

    first = browser.get(app.authorization_url())
    assert first.status_code == 302 and first.headers["Location"].startswith("/oauth/login?next=")
    login_page = browser.get(first.headers["Location"])
    assert login_page.status_code == 200
    assert "身份证号码" in login_page.text  # Chinese by default
    for page in (login_page,):
        assert page.headers["Cache-Control"] == "no-store"
        assert page.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
        assert "<script" not in page.text
    consent_page = browser.get(browser.login(login_page, person).headers["Location"])
    assert consent_page.status_code == 200
    assert consent_page.headers["Cache-Control"] == "no-store"
    assert consent_page.headers["X-Frame-Options"] == "DENY"
    for description in ("登录身份确认", "您的姓名", "您的手机号码"):
        assert description in consent_page.text
    callback = browser.consent(consent_page)
    params = callback_params(callback)
    assert params["state"] == app.state and "code" in params
    assert callback.headers["Cache-Control"] == "no-store"

    token = app.exchange(callback)
    assert token["token_type"].lower() == "bearer" and token["expires_in"] == 600
    assert set(token["scope"].split()) == {"openid", "profile", "phone"}
    assert token["refresh_token"] and token["id_token"]

    access = verify(live, token["access_token"], audience=f"{live.url}/api", typ="at+jwt")
    assert access["cc_kind"] == "resident" and access["client_id"] == app.client_id
    assert str(person.account_id) != access["sub"] and person.login not in token["access_token"]
    assert access["auth_time"] <= access["iat"]

    id_token = verify(live, token["id_token"], audience=app.client_id, typ="JWT")
    assert id_token["sub"] == access["sub"]
    assert id_token["nonce"] == app.nonce
    assert id_token["exp"] - id_token["iat"] == 600
    assert id_token["auth_time"] == access["auth_time"]
    digest = hashlib.sha256(token["access_token"].encode()).digest()
    assert id_token["at_hash"] == base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()

    info = bearer_get(live, "/oauth/userinfo", token["access_token"])
    assert info.status_code == 200 and info.headers["Cache-Control"] == "no-store"
    assert info.json() == {"sub": access["sub"], "name": "王小明", "phone_number": "+8613912345678"}
    with live.app.app_context():
        events = set(
            db.session.scalars(
                select(AuditEvent.action).where(AuditEvent.citizen_id == person.citizen_id)
            )
        )
    assert {"account.login", "oauth.consent.grant", "oauth.authorize", "oauth.userinfo"} <= events


def _all_actions(live):
    with live.app.app_context():
        return set(db.session.scalars(select(AuditEvent.action)))


def test_english_pages_follow_accept_language(live):
    app = App(live)
    page = Browser(live.url, language="en-GB,en;q=0.9").run(app.authorization_url())
    assert page.status_code == 200 and "ID number (staff: username)" in page.text
    assert page.headers["Content-Language"] == "en"


def test_userinfo_claims_follow_scopes_and_need_openid(live):
    person = setup(live, make_resident)
    app = App(live, scopes="openid")
    token = app.sign_in(Browser(live.url), person)
    sub = verify(live, token["access_token"], audience=f"{live.url}/api", typ="at+jwt")["sub"]
    assert bearer_get(live, "/oauth/userinfo", token["access_token"]).json() == {"sub": sub}
    no_openid = App(live, scopes="profile")
    token = no_openid.sign_in(Browser(live.url), person)
    assert "id_token" not in token
    r = bearer_get(live, "/oauth/userinfo", token["access_token"])
    assert r.status_code == 403 and 'error="insufficient_scope"' in r.headers["WWW-Authenticate"]
    assert bearer_get(live, "/oauth/userinfo", "garbage").status_code == 401


def test_metadata_advertises_the_code_flow(live):
    doc = requests.get(f"{live.url}/.well-known/openid-configuration", timeout=10).json()
    assert doc["authorization_endpoint"] == f"{live.url}/oauth/authorize"
    assert doc["userinfo_endpoint"] == f"{live.url}/oauth/userinfo"
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert "none" in doc["token_endpoint_auth_methods_supported"]


# -- consent -----------------------------------------------------------------------------------
def test_consent_is_remembered_then_withdrawn_and_asked_again(live):
    person = setup(live, make_resident)
    app = App(live, scopes="openid profile me:consents")
    browser = Browser(live.url)
    token = app.sign_in(browser, person)

    # Signed in and consented: the next request goes straight back with a code.
    again = browser.get(app.authorization_url())
    assert "code" in callback_params(again)
    # Fewer scopes than consented: no page either.
    assert "code" in callback_params(browser.get(app.authorization_url(scope="openid")))

    listed = bearer_get(live, "/api/v1/me/consents", token["access_token"])
    assert listed.status_code == 200
    [entry] = [c for c in listed.json() if c["client_id"] == app.client_id]
    assert {s["scope"] for s in entry["scopes"]} == {"openid", "profile", "me:consents"}
    assert entry["organisation"] == "City App"

    r = requests.delete(
        f"{live.url}/api/v1/me/consents/{app.client_id}",
        timeout=10,
        headers={"Authorization": f"Bearer {token['access_token']}"},
    )
    assert r.status_code == 204
    # Withdrawn: the app's refresh tokens are dead and the page is shown again.
    assert app.refresh(token["refresh_token"]).json()["error"] == "invalid_grant"
    page = browser.get(app.authorization_url())
    assert page.status_code == 200 and 'action="/oauth/consent"' in page.text
    r = requests.delete(
        f"{live.url}/api/v1/me/consents/{app.client_id}",
        timeout=10,
        headers={"Authorization": f"Bearer {token['access_token']}"},
    )
    assert r.status_code == 404 and r.headers["Content-Type"] == "application/problem+json"
    assert r.json()["code"] == "CONSENT_NOT_FOUND"


def test_prompt_consent_shows_the_page_even_when_remembered(live):
    person = setup(live, make_resident)
    app = App(live)
    browser = Browser(live.url)
    app.sign_in(browser, person)
    page = browser.get(app.authorization_url(prompt="consent"))
    assert page.status_code == 200 and 'action="/oauth/consent"' in page.text


def test_deny_redirects_access_denied(live):
    person = setup(live, make_resident)
    app = App(live)
    callback = Browser(live.url).run(app.authorization_url(), person, decision="deny")
    params = callback_params(callback)
    assert params["error"] == "access_denied" and params["state"] == app.state
    with live.app.app_context():
        assert (
            db.session.scalar(
                select(func.count()).select_from(Consent).where(Consent.client_id == app.client_id)
            )
            == 0
        )


def test_consents_api_is_for_resident_tokens_only(live):
    staff = setup(live, make_staff)
    station = App(
        live, scopes="openid me:consents citizens:read", kind="station", organisation="Station 7"
    )
    token = station.sign_in(Browser(live.url), staff)
    # Staff hold no me:consents (not a role scope): 403 either way.
    r = bearer_get(live, "/api/v1/me/consents", token["access_token"])
    assert r.status_code == 403 and r.headers["Content-Type"] == "application/problem+json"


# -- PKCE and redirect URIs --------------------------------------------------------------------
def _authorize_params(app, **changes):
    params = {
        "response_type": "code",
        "client_id": app.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid",
        "state": "s-123",
        "code_challenge": base64.urlsafe_b64encode(hashlib.sha256(b"v" * 43).digest())
        .rstrip(b"=")
        .decode(),
        "code_challenge_method": "S256",
    }
    params.update(changes)
    return {k: v for k, v in params.items() if v is not None}


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"code_challenge_method": "plain", "code_challenge": "x" * 43}, "S256"),
        ({"code_challenge": None, "code_challenge_method": None}, "PKCE is required"),
        ({"code_challenge_method": None}, "S256"),
    ],
)
def test_pkce_downgrade_and_missing_challenge_are_refused(live, changes, reason):
    app = App(live)
    r = Browser(live.url).get("/oauth/authorize", params=_authorize_params(app, **changes))
    params = callback_params(r)
    assert params["error"] == "invalid_request" and reason in params["error_description"]
    assert params["state"] == "s-123"


def test_wrong_verifier_is_refused(live):
    person = setup(live, make_resident)
    app = App(live)
    callback = Browser(live.url).run(app.authorization_url(), person)
    code = callback_params(callback)["code"]
    r = app.token_request(
        grant_type="authorization_code",
        code=code,
        redirect_uri=REDIRECT_URI,
        code_verifier=generate_token(48),
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    r = app.token_request(grant_type="authorization_code", code=code, redirect_uri=REDIRECT_URI)
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"  # no verifier


def test_redirect_uri_mismatch_refused_at_authorize_and_at_token(live):
    person = setup(live, make_resident)
    app = App(live, redirect_uris=(REDIRECT_URI, "http://127.0.0.1/other"))
    browser = Browser(live.url)
    for uri in ("https://evil.example/cb", REDIRECT_URI + "/", REDIRECT_URI + "?x=1", None):
        r = browser.get("/oauth/authorize", params=_authorize_params(app, redirect_uri=uri))
        # Never redirected to an unregistered URI: an error page on our side.
        assert r.status_code == 400 and "Location" not in r.headers
        assert r.headers["Content-Type"].startswith("text/html")
    callback = browser.run(app.authorization_url(), person)
    code = callback_params(callback)["code"]
    r = app.token_request(
        grant_type="authorization_code",
        code=code,
        redirect_uri="http://127.0.0.1/other",
        code_verifier=app.verifier,
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_unknown_client_and_unsupported_response_type(live):
    app = App(live)
    browser = Browser(live.url)
    r = browser.get("/oauth/authorize", params=_authorize_params(app, client_id="nobody"))
    assert r.status_code == 400 and "Location" not in r.headers
    r = browser.get("/oauth/authorize", params=_authorize_params(app, response_type="token"))
    assert callback_params(r)["error"] == "unsupported_response_type"


# -- codes ---------------------------------------------------------------------------------
def test_code_reuse_is_refused_and_revokes_the_family(live):
    person = setup(live, make_resident)
    app = App(live)
    callback = Browser(live.url).run(app.authorization_url(), person)
    code = callback_params(callback)["code"]
    token = app.exchange(callback)
    replay = app.token_request(
        grant_type="authorization_code",
        code=code,
        redirect_uri=REDIRECT_URI,
        code_verifier=app.verifier,
    )
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    # RFC 6749 §4.1.2: what the code gave is revoked too.
    r = app.refresh(token["refresh_token"])
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    with live.app.app_context():
        stored = db.session.scalars(
            select(AuthorizationCode).where(AuthorizationCode.client_id == app.client_id)
        ).one()
        assert stored.code_hash == hashlib.sha256(code.encode()).hexdigest()  # only the hash
        assert stored.used_at is not None


def test_expired_code_is_refused(live):
    person = setup(live, make_resident)
    app = App(live)
    callback = Browser(live.url).run(app.authorization_url(), person)
    with live.app.app_context():
        db.session.execute(
            update(AuthorizationCode)
            .where(AuthorizationCode.client_id == app.client_id)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        db.session.commit()
    code = callback_params(callback)["code"]
    r = app.token_request(
        grant_type="authorization_code",
        code=code,
        redirect_uri=REDIRECT_URI,
        code_verifier=app.verifier,
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_code_is_bound_to_its_client(live):
    person = setup(live, make_resident)
    app, other = App(live), App(live)
    code = callback_params(Browser(live.url).run(app.authorization_url(), person))["code"]
    r = other.token_request(
        grant_type="authorization_code",
        code=code,
        redirect_uri=REDIRECT_URI,
        code_verifier=app.verifier,
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_confidential_client_needs_its_secret_and_pkce(live):
    person = setup(live, make_resident)
    app = App(live, public=False)
    token = app.sign_in(Browser(live.url), person)
    assert token["access_token"]
    code = callback_params(Browser(live.url).run(app.authorization_url(), person))["code"]
    r = requests.post(
        f"{live.url}/oauth/token",
        timeout=10,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": app.verifier,
            "client_id": app.client_id,
        },
    )
    assert r.status_code in (400, 401) and r.json()["error"] == "invalid_client"


# -- refresh -----------------------------------------------------------------------------------
def test_refresh_rotates_and_reuse_revokes_the_family(live):
    person = setup(live, make_resident)
    app = App(live)
    first = app.sign_in(Browser(live.url), person)
    second = app.refresh(first["refresh_token"])
    assert second.status_code == 200
    second = second.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert "id_token" not in second
    claims = verify(live, second["access_token"], audience=f"{live.url}/api", typ="at+jwt")
    assert claims["cc_kind"] == "resident"
    # The spent token comes back: someone else has the family. All of it dies.
    reuse = app.refresh(first["refresh_token"])
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    assert app.refresh(second["refresh_token"]).json()["error"] == "invalid_grant"
    assert "oauth.refresh.revoke_family" in _all_actions(live)


def test_refresh_may_narrow_but_not_widen_scope(live):
    person = setup(live, make_resident)
    app = App(live)
    token = app.sign_in(Browser(live.url), person)
    wider = app.token_request(
        grant_type="refresh_token",
        refresh_token=token["refresh_token"],
        scope="openid profile phone me:consents",
    )
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"
    narrow = app.token_request(
        grant_type="refresh_token", refresh_token=token["refresh_token"], scope="openid"
    )
    assert narrow.status_code == 200 and narrow.json()["scope"] == "openid"
    # The family keeps its scope: the next refresh may have all of it again.
    full = app.refresh(narrow.json()["refresh_token"]).json()
    assert set(full["scope"].split()) == {"openid", "profile", "phone"}


def test_two_concurrent_uses_of_one_refresh_token(live):
    person = setup(live, make_resident)
    app = App(live)
    token = app.sign_in(Browser(live.url), person)
    results = []
    barrier = threading.Barrier(2)

    def use():
        barrier.wait()
        results.append(app.refresh(token["refresh_token"]))

    threads = [threading.Thread(target=use) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    codes = sorted(r.status_code for r in results)
    assert codes == [200, 400]
    winner = next(r for r in results if r.status_code == 200).json()
    # The loser's reuse revoked the family, winner's new token included.
    assert app.refresh(winner["refresh_token"]).json()["error"] == "invalid_grant"


def test_no_refresh_token_without_the_grant(live):
    person = setup(live, make_resident)
    app = App(live, refresh=False)
    token = app.sign_in(Browser(live.url), person)
    assert "refresh_token" not in token


def test_refresh_token_revocation_revokes_the_family(live):
    person = setup(live, make_resident)
    app = App(live)
    first = app.sign_in(Browser(live.url), person)
    second = app.refresh(first["refresh_token"]).json()
    r = requests.post(
        f"{live.url}/oauth/revoke",
        timeout=10,
        data={
            "token": first["refresh_token"],
            "token_type_hint": "refresh_token",
            "client_id": app.client_id,
        },
    )
    assert r.status_code == 200
    assert app.refresh(second["refresh_token"]).json()["error"] == "invalid_grant"
    # Another client cannot revoke it.
    other = App(live)
    third = app.sign_in(Browser(live.url), person)
    r = requests.post(
        f"{live.url}/oauth/revoke",
        timeout=10,
        data={"token": third["refresh_token"], "client_id": other.client_id},
    )
    assert r.status_code == 400
    assert app.refresh(third["refresh_token"]).status_code == 200


def test_suspended_client_refused_at_authorize_and_refresh(live):
    person = setup(live, make_resident)
    app = App(live)
    browser = Browser(live.url)
    token = app.sign_in(browser, person)
    setup(live, set_client_status, app.client_id, "suspended", actor=SYSTEM, reason="audit")
    time.sleep(live.app.config["OAUTH2_CACHE_SECONDS"] + 0.1)  # other workers' client caches
    r = browser.get(app.authorization_url())
    assert r.status_code == 400 and "Location" not in r.headers
    assert "unauthorized" in r.text or "invalid_client" in r.text
    r = app.refresh(token["refresh_token"])
    assert r.status_code in (400, 401) and r.json()["error"] == "invalid_client"


def test_disabled_account_and_departed_citizen_cannot_refresh(live):
    person = setup(live, make_resident)
    app = App(live)
    token = app.sign_in(Browser(live.url), person)
    setup(
        live,
        accounts.set_account_status,
        person.account_id,
        "disabled",
        actor=SYSTEM,
        reason="test",
    )
    assert app.refresh(token["refresh_token"]).json()["error"] == "invalid_grant"
    # The access token still verifies for its last minutes, but UserInfo releases nothing.
    r = bearer_get(live, "/oauth/userinfo", token["access_token"])
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["WWW-Authenticate"]

    other = setup(live, make_resident)
    token = app.sign_in(Browser(live.url), other)
    setup(
        live,
        citizen_actions.record_life_event,
        other.citizen_id,
        "moved_away",
        effective_date=date(2025, 1, 1),
        actor=SYSTEM,
        reason="moved to Tianjin",
    )
    r = app.refresh(token["refresh_token"])
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


# -- sessions and forms ------------------------------------------------------------------------
def test_csrf_token_missing_or_wrong_is_400(live):
    person = setup(live, make_resident)
    app = App(live)
    browser = Browser(live.url)
    login_page = browser.run(app.authorization_url())
    fields = hidden_fields(login_page.text)
    for bad in ({}, {"csrf_token": "forged"}):
        data = {k: v for k, v in fields.items() if k != "csrf_token"} | bad
        r = browser.post("/oauth/login", {**data, "login": person.login, "password": PASSWORD})
        assert r.status_code == 400
    # Another browser's token does not work in this one either.
    stranger = Browser(live.url)
    stranger_fields = hidden_fields(stranger.run(app.authorization_url()).text)
    r = browser.post(
        "/oauth/login",
        {
            **fields,
            "csrf_token": stranger_fields["csrf_token"],
            "login": person.login,
            "password": PASSWORD,
        },
    )
    assert r.status_code == 400
    consent_page = browser.get(browser.login(login_page, person).headers["Location"])
    data = {k: v for k, v in hidden_fields(consent_page.text).items() if k != "csrf_token"}
    r = browser.post("/oauth/consent", {**data, "decision": "allow"})
    assert r.status_code == 400 and "Location" not in r.headers


def test_login_next_cannot_redirect_elsewhere(live):
    person = setup(live, make_resident)
    browser = Browser(live.url)
    page = browser.get("/oauth/login", params={"next": "https://evil.example/"})
    fields = hidden_fields(page.text)
    assert "next" not in fields
    r = browser.post(
        "/oauth/login",
        {
            **fields,
            "next": "//evil.example/oauth/authorize",
            "login": person.login,
            "password": PASSWORD,
        },
    )
    assert r.status_code == 302 and r.headers["Location"] == "/oauth/logout"


def test_prompt_none_and_prompt_login(live):
    person = setup(live, make_resident)
    app = App(live)
    browser = Browser(live.url)
    r = browser.get(app.authorization_url(prompt="none"))
    assert callback_params(r)["error"] == "login_required"
    app.sign_in(browser, person)
    r = browser.get(app.authorization_url(prompt="login"))
    assert r.status_code == 302 and r.headers["Location"].startswith("/oauth/login")
    assert "prompt" not in r.headers["Location"]
    other = App(live)
    r = browser.get(other.authorization_url(prompt="none"))
    assert callback_params(r)["error"] == "consent_required"


def test_logout_ends_the_session(live):
    person = setup(live, make_resident)
    app = App(live)
    browser = Browser(live.url)
    app.sign_in(browser, person)
    page = browser.get("/oauth/logout")
    assert "王**" in page.text
    r = browser.post(
        "/oauth/logout",
        {
            **hidden_fields(page.text),
            "client_id": app.client_id,
            "post_logout_redirect_uri": REDIRECT_URI,
            "state": "bye",
        },
    )
    assert r.status_code == 302 and r.headers["Location"] == REDIRECT_URI + "?state=bye"
    r = browser.get(app.authorization_url())
    assert r.headers["Location"].startswith("/oauth/login")


def test_password_reset_ends_earlier_sign_in_sessions(live):
    person = setup(live, make_resident)
    app = App(live)
    browser = Browser(live.url)
    token = app.sign_in(browser, person)
    setup(live, accounts.set_resident_password, person.citizen_id, "a new pass 99", actor=SYSTEM)
    r = browser.get(app.authorization_url())
    assert r.headers["Location"].startswith("/oauth/login")
    # ... and the refresh tokens issued before the reset.
    assert app.refresh(token["refresh_token"]).json()["error"] == "invalid_grant"


# -- who gets what -----------------------------------------------------------------------------
def test_pairwise_subjects_differ_across_organisations_and_match_within(live):
    person = setup(live, make_resident)
    hospital_a = App(live, organisation="Hospital A")
    hospital_a2 = App(live, organisation="Hospital A")
    insurer = App(live, organisation="Insurer B")
    browser = Browser(live.url)
    subs = [
        verify(live, a.sign_in(browser, person)["id_token"], audience=a.client_id, typ="JWT")["sub"]
        for a in (hospital_a, hospital_a2, insurer)
    ]
    assert subs[0] == subs[1] != subs[2]
    with live.app.app_context():
        assert subs[0] == pairwise_subject("Hospital A", person.account_id)
    # Stable: the same again later.
    again = hospital_a.sign_in(browser, person)
    assert (
        verify(live, again["access_token"], audience=f"{live.url}/api", typ="at+jwt")["sub"]
        == subs[0]
    )


def test_resident_tokens_never_carry_staff_or_partner_privileges(live):
    person = setup(live, make_resident)
    app = App(live, scopes="openid citizens:read citizens:pii hello_service:read")
    token = app.sign_in(Browser(live.url), person)
    assert set(token["scope"].split()) == {"openid", "hello_service:read"}
    only_privileges = App(live, scopes="citizens:read")
    r = Browser(live.url).run(only_privileges.authorization_url(), person)
    assert callback_params(r)["error"] == "invalid_scope"


def test_staff_token_carries_role_station_and_role_limited_scopes(live):
    staff = setup(live, make_staff, "clerk", "station-12")
    station = App(
        live,
        scopes="openid citizens:read cards:issue audit:read admin:clients",
        kind="station",
        organisation="Chaoyang Station 12",
    )
    asked = "openid citizens:read audit:read admin:clients"
    browser = Browser(live.url)
    callback = browser.run(station.authorization_url(scope=asked), staff)
    token = station.exchange(callback)  # no consent page: staff act under their role
    claims = verify(live, token["access_token"], audience=f"{live.url}/api", typ="at+jwt")
    assert claims["cc_kind"] == "staff" and claims["sub"] == f"staff:{staff.account_id}"
    assert claims["cc_role"] == "clerk" and claims["cc_station"] == "station-12"
    # clerk ∩ requested ∩ client: audit:read (supervisor) and admin:clients (admin) are out.
    assert set(claims["scope"].split()) == {"openid", "citizens:read"}
    me = bearer_get(live, "/api/v1/me", token["access_token"])
    assert me.status_code == 200
    supervisor = setup(live, make_staff, "supervisor")
    token = station.sign_in(Browser(live.url), supervisor, scope=asked)
    assert set(token["scope"].split()) == {"openid", "citizens:read", "audit:read"}


def test_staff_cannot_sign_in_through_a_partner_app(live):
    staff = setup(live, make_staff)
    app = App(live, scopes="openid citizens:read")
    r = Browser(live.url).run(app.authorization_url(), staff)
    assert callback_params(r)["error"] == "access_denied"


def test_resident_without_password_cannot_sign_in(live):
    person = setup(live, make_resident, None)
    app = App(live)
    browser = Browser(live.url)
    page = browser.run(app.authorization_url())
    r = browser.login(page, person, password="anything at all")
    assert r.status_code == 200 and "证件号码、用户名或密码错误" in r.text
    with live.app.app_context():
        assert db.session.get(Account, person.account_id).password_hash is None


def test_refresh_tokens_are_stored_hashed(live):
    person = setup(live, make_resident)
    app = App(live)
    token = app.sign_in(Browser(live.url), person)
    with live.app.app_context():
        row = db.session.scalars(
            select(RefreshToken).where(RefreshToken.client_id == app.client_id)
        ).one()
    assert row.token_hash == hashlib.sha256(token["refresh_token"].encode()).hexdigest()
    assert len(base64.urlsafe_b64decode(token["refresh_token"] + "=")) == 32
    lifetime = row.expires_at.replace(tzinfo=UTC) - row.issued_at.replace(tzinfo=UTC)
    assert lifetime == timedelta(days=30)


def test_max_age(live):
    person = setup(live, make_resident)
    app = App(live)
    browser = Browser(live.url)
    app.sign_in(browser, person)
    assert "code" in callback_params(browser.get(app.authorization_url(max_age="3600")))
    for odd in ("²", "-1", "soon"):  # not a number of seconds: ignored, never a 500
        assert "code" in callback_params(browser.get(app.authorization_url(max_age=odd)))


def test_openapi_documents_the_new_api_routes(live):
    spec = requests.get(f"{live.url}/api/openapi.json", timeout=10).json()
    assert "/api/v1/me/consents" in spec["paths"]
    assert "/api/v1/citizens/{citizen_id}/account/password" in spec["paths"]
    flows = spec["components"]["securitySchemes"]["oauth2"]["flows"]
    assert flows["authorizationCode"]["authorizationUrl"] == f"{live.url}/oauth/authorize"
