"""Password guessing is slowed per pair, per address and per account; no lock lasts forever.

Time is moved by editing ``locked_until`` in the database, never by sleeping.
"""

from __future__ import annotations

import json
import re
from datetime import UTC
from datetime import datetime
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy import update

from citizen_card.audit.models import AuditEvent
from citizen_card.extensions import db
from citizen_card.oauth import accounts
from citizen_card.oauth import throttle
from citizen_card.oauth.models import LoginThrottle
from tests.oauth.conftest import PASSWORD
from tests.oauth.conftest import SYSTEM
from tests.oauth.conftest import Browser
from tests.oauth.conftest import hidden_fields
from tests.oauth.conftest import make_resident
from tests.oauth.conftest import new_national_id

ATTACKER = "203.0.113.66"
HOME = "198.51.100.10"


@pytest.fixture()
def ctx(fast_app, app_ctx):
    return fast_app


def attempt(login, password, address):
    """'ok', 'failed' or 'locked'."""
    try:
        accounts.authenticate(login, password, address=address)
    except accounts.LoginLocked:
        return "locked"
    except accounts.LoginFailed:
        return "failed"
    return "ok"


def row(key):
    return db.session.get(LoginThrottle, key)


def keys(login, address):
    return throttle.keys_for(accounts.login_index(login), address)


def expire(key):
    """Pretend the lock on key ended a second ago."""
    db.session.execute(
        update(LoginThrottle)
        .where(LoginThrottle.key == key)
        .values(locked_until=datetime.now(UTC) - timedelta(seconds=1))
    )
    db.session.commit()


def lock_span(key):
    until = row(key).locked_until
    until = until if until.tzinfo else until.replace(tzinfo=UTC)
    return until - datetime.now(UTC)


def lockouts():
    return [
        json.loads(e.details)
        for e in db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "account.login.lockout")
        )
    ]


def test_pair_locks_after_five_failures_but_not_the_owner_elsewhere(ctx):
    person = make_resident()
    assert [attempt(person.login, "guess", ATTACKER) for _ in range(5)] == ["failed"] * 5
    # Even the right password is not checked from the locked pair.
    assert attempt(person.login, PASSWORD, ATTACKER) == "locked"
    # The resident at home is not locked out by someone else's guessing.
    assert attempt(person.login, PASSWORD, HOME) == "ok"
    assert (
        timedelta(seconds=50) < lock_span(keys(person.login, ATTACKER).pair) <= timedelta(minutes=1)
    )


def test_pair_backoff_doubles_and_caps_at_fifteen_minutes(ctx):
    person = make_resident()
    key = keys(person.login, ATTACKER).pair
    for _ in range(5):
        attempt(person.login, "guess", ATTACKER)
    spans = []
    for _ in range(6):
        spans.append(round(lock_span(key).total_seconds() / 60))
        expire(key)
        assert attempt(person.login, "guess", ATTACKER) == "failed"
    assert spans == [1, 2, 4, 8, 15, 15]


def test_lock_expires_and_a_success_resets_the_pair(ctx):
    person = make_resident()
    key = keys(person.login, ATTACKER).pair
    for _ in range(5):
        attempt(person.login, "guess", ATTACKER)
    assert attempt(person.login, PASSWORD, ATTACKER) == "locked"
    expire(key)
    assert attempt(person.login, PASSWORD, ATTACKER) == "ok"
    assert row(key) is None  # streak forgotten: the next typo does not relock at once
    assert attempt(person.login, "typo", ATTACKER) == "failed"
    assert attempt(person.login, PASSWORD, ATTACKER) == "ok"


def test_address_blocked_after_thirty_failures_for_every_account(ctx):
    person = make_resident()
    # Spraying: one guess each at many ID numbers, so no pair reaches its limit.
    for _ in range(30):
        assert attempt(new_national_id(), "123456ab", ATTACKER) == "failed"
    assert attempt(person.login, PASSWORD, ATTACKER) == "locked"
    assert attempt(new_national_id(), "whatever1", ATTACKER) == "locked"
    assert attempt(person.login, PASSWORD, HOME) == "ok"
    address_key = keys(person.login, ATTACKER).address
    assert timedelta(minutes=9) < lock_span(address_key) <= timedelta(minutes=10)
    expire(address_key)
    assert attempt(person.login, PASSWORD, ATTACKER) == "ok"


def test_account_locked_after_fifty_failures_from_many_addresses(ctx):
    person = make_resident()
    for i in range(50):
        assert attempt(person.login, "guess", f"192.0.2.{i}") == "failed"
    # A distributed attack on one account: locked everywhere, but for 15 minutes only.
    assert attempt(person.login, PASSWORD, HOME) == "locked"
    account_key = keys(person.login, HOME).account
    assert timedelta(minutes=14) < lock_span(account_key) <= timedelta(minutes=15)
    expire(account_key)
    assert attempt(person.login, PASSWORD, HOME) == "ok"


def test_password_reset_at_a_station_clears_the_locks(ctx):
    person = make_resident()
    for i in range(50):
        attempt(person.login, "guess", f"192.0.2.{i % 10}")
    assert attempt(person.login, PASSWORD, HOME) == "locked"
    accounts.set_resident_password(person.citizen_id, "brand new pass", actor=SYSTEM)
    assert attempt(person.login, "brand new pass", "192.0.2.1") == "ok"
    assert attempt(person.login, "brand new pass", HOME) == "ok"


def test_unknown_login_is_throttled_exactly_like_a_known_one(ctx):
    known, unknown = make_resident().login, new_national_id()
    outcomes = {
        login: [attempt(login, "guess", ATTACKER) for _ in range(6)] for login in (known, unknown)
    }
    assert outcomes[known] == outcomes[unknown] == ["failed"] * 5 + ["locked"]


def test_every_lockout_is_audited(ctx):
    person = make_resident()
    for _ in range(5):
        attempt(person.login, "guess", ATTACKER)
    [event] = [e for e in lockouts() if e["scope"] == "pair" and e["address"] == ATTACKER]
    assert event["failures"] == 5 and event["locked_until"]
    for _ in range(30):
        attempt(new_national_id(), "guess", "192.0.2.200")
    assert any(e["scope"] == "address" and e["address"] == "192.0.2.200" for e in lockouts())
    subjects = set(
        db.session.scalars(
            select(AuditEvent.subject).where(AuditEvent.action == "account.login.lockout")
        )
    )
    assert f"account:{person.account_id}" in subjects and "account:unknown" in subjects


def test_counters_store_no_login_name_or_address(ctx):
    person = make_resident()
    attempt(person.login, "guess", ATTACKER)
    stored = " ".join(db.session.scalars(select(LoginThrottle.key)))
    assert person.login not in stored and ATTACKER not in stored


def test_purge_keeps_what_still_counts(ctx):
    person = make_resident()
    attempt(person.login, "guess", ATTACKER)
    assert throttle.purge() == 0
    db.session.execute(
        update(LoginThrottle).values(window_started=datetime.now(UTC) - timedelta(days=2))
    )
    assert throttle.purge() == 3


# -- over HTTP ---------------------------------------------------------------------------------
def _login(live, login, password):
    browser = Browser(live.url)
    page = browser.get("/oauth/login")
    fields = {**hidden_fields(page.text), "login": login, "password": password}
    return browser.post("/oauth/login", fields)


def _alert(page):
    return re.search(r'<p class="error" role="alert">(.*?)</p>', page.text).group(1)


def test_login_page_answers_alike_for_unknown_and_wrong_and_says_when_locked(fast_live):
    live = fast_live
    with live.app.app_context():
        person = make_resident()
    wrong = _login(live, person.login, "not the password")
    unknown = _login(live, new_national_id(), "not the password")
    assert wrong.status_code == unknown.status_code == 200
    assert _alert(wrong) == _alert(unknown) == "证件号码、用户名或密码错误。"
    for _ in range(3):
        _login(live, person.login, "not the password")
    fifth = _login(live, person.login, "not the password")
    assert fifth.status_code == 200 and _alert(fifth) == _alert(unknown)
    locked = _login(live, person.login, PASSWORD)
    assert locked.status_code == 429
    assert 0 < int(locked.headers["Retry-After"]) <= 60
    assert "登录失败次数过多" in _alert(locked)
    assert locked.headers["Cache-Control"] == "no-store"
    english = Browser(live.url, language="en")
    page = english.get("/oauth/login")
    r = english.post(
        "/oauth/login", {**hidden_fields(page.text), "login": person.login, "password": PASSWORD}
    )
    assert r.status_code == 429 and "Try again in 1 minute(s)" in _alert(r)
