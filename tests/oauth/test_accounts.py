"""Accounts: residents' passwords set at a station, staff accounts, password rules, the CLI."""

from __future__ import annotations

from datetime import date

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from citizen_card.audit.models import AuditEvent
from citizen_card.citizens import actions as citizen_actions
from citizen_card.citizens.actions import CitizenNotFound
from citizen_card.citizens.models import Citizen
from citizen_card.extensions import db
from citizen_card.oauth import accounts
from citizen_card.oauth.clients import create_client
from citizen_card.oauth.models import Account
from citizen_card.oauth.tokens import issue_access_token
from citizen_card.pii import keyring
from tests.oauth.conftest import PASSWORD
from tests.oauth.conftest import SYSTEM
from tests.oauth.conftest import make_resident
from tests.oauth.conftest import make_staff
from tests.oauth.conftest import new_national_id

ADDRESS = "198.51.100.7"


@pytest.fixture(autouse=True)
def _cheap(fast_app, app_ctx):
    """Every test here runs in an app context with cheap hashing."""


def test_resident_account_has_its_own_login_index_and_an_argon2id_hash():
    person = make_resident()
    account = db.session.get(Account, person.account_id)
    citizen = db.session.get(Citizen, person.citizen_id)
    assert account.kind == "resident" and account.citizen_id == citizen.id
    assert account.login_index == keyring().blind_index(person.login, "account.login")
    # Not the registry's index: the two tables cannot be joined on it.
    assert account.login_index != citizen.national_id_index
    assert account.password_hash.startswith("$argon2id$")
    assert PASSWORD not in account.password_hash and account.password_set_at is not None
    event = db.session.scalars(
        select(AuditEvent).where(
            AuditEvent.action == "account.password.set", AuditEvent.citizen_id == citizen.id
        )
    ).one()
    assert event.actor_id == "test" and PASSWORD not in event.details


def test_account_without_password_is_usable_only_after_one_is_set():
    person = make_resident(password=None)
    with pytest.raises(accounts.LoginFailed):
        accounts.authenticate(person.login, "", address=ADDRESS)
    with pytest.raises(accounts.LoginFailed):
        accounts.authenticate(person.login, "whatever it is", address=ADDRESS)
    account = accounts.set_resident_password(person.citizen_id, "now a pass 7", actor=SYSTEM)
    assert account.id == person.account_id  # the same account, not a second one
    assert accounts.authenticate(person.login, "now a pass 7", address=ADDRESS).id == account.id
    # The ID number is matched however it is typed (spaces, lower-case x).
    spaced = " ".join([person.login[:6], person.login[6:14], person.login[14:].lower()])
    assert accounts.authenticate(spaced, "now a pass 7", address=ADDRESS).id == account.id


@pytest.mark.parametrize("event", ["deceased", "moved_away"])
def test_no_password_for_a_citizen_who_died_or_moved_away(event):
    person = make_resident()
    citizen_actions.record_life_event(
        person.citizen_id, event, effective_date=date(2025, 1, 1), actor=SYSTEM, reason="notice 1"
    )
    with pytest.raises(accounts.CitizenNotEligible) as caught:
        accounts.set_resident_password(person.citizen_id, "another pass 1", actor=SYSTEM)
    assert caught.value.status == 409
    # The account that exists can no longer sign in either, even with the right password.
    with pytest.raises(accounts.AccountUnusable):
        accounts.authenticate(person.login, PASSWORD, address=ADDRESS)


def test_unknown_citizen():
    with pytest.raises(CitizenNotFound):
        accounts.set_resident_password(10**9, "a fine pass 1", actor=SYSTEM)
    with pytest.raises(CitizenNotFound):
        accounts.set_resident_password_by_national_id(new_national_id(), "fine pass", actor=SYSTEM)


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("short1a", "min_length"),
        ("123456", "min_length"),
        ("12345678", "not_a_pin"),
        ("19900307123456789", "not_a_pin"),
        ("x" * 129, "max_length"),
        ("{login}", "contains_login"),
        ("my id {login} !", "contains_login"),
    ],
)
def test_password_rules(password, rule):
    person = make_resident(password=None)
    with pytest.raises(accounts.PasswordRejected) as caught:
        accounts.set_resident_password(
            person.citizen_id, password.format(login=person.login.lower()), actor=SYSTEM
        )
    assert caught.value.extensions["rule"] == rule
    assert caught.value.status == 422


def test_staff_accounts():
    staff = make_staff("supervisor", "station-3")
    account = db.session.get(Account, staff.account_id)
    assert (account.kind, account.role, account.station) == ("staff", "supervisor", "station-3")
    assert account.citizen_id is None
    assert accounts.authenticate(staff.login.upper(), PASSWORD, address=ADDRESS).id == account.id
    with pytest.raises(accounts.UsernameTaken):
        accounts.create_staff_account(
            staff.login, role="clerk", station="s", password=PASSWORD, actor=SYSTEM
        )
    for username, role, station in (
        ("110105199003071234", "clerk", "s"),  # looks like a national ID
        ("ok.name", "boss", "s"),
        ("ok.name", "clerk", ""),
    ):
        with pytest.raises(accounts.InvalidStaffAccount):
            accounts.create_staff_account(
                username, role=role, station=station, password=PASSWORD, actor=SYSTEM
            )
    with pytest.raises(accounts.PasswordRejected):
        accounts.create_staff_account(
            "wang.fang", role="clerk", station="s", password="wang.fang1", actor=SYSTEM
        )


def test_disabled_account_cannot_sign_in():
    person = make_resident()
    accounts.set_account_status(person.account_id, "disabled", actor=SYSTEM, reason="fraud")
    with pytest.raises(accounts.AccountUnusable):
        accounts.authenticate(person.login, PASSWORD, address=ADDRESS)
    accounts.set_account_status(person.account_id, "active", actor=SYSTEM, reason="cleared")
    assert accounts.authenticate(person.login, PASSWORD, address=ADDRESS)


def test_unknown_login_costs_a_hash_like_a_wrong_password(monkeypatch):
    person = make_resident()
    calls = []
    original = PasswordHasher.verify

    def counting(self, hash, password):
        calls.append(hash)
        return original(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting)
    errors = []
    for login in (person.login, new_national_id(), "no.such.user"):
        with pytest.raises(accounts.LoginFailed) as caught:
            accounts.authenticate(login, "wrong password", address=ADDRESS)
        errors.append((caught.value.status, caught.value.title, caught.value.detail))
    assert len(calls) == 3 and all(h.startswith("$argon2id$") for h in calls)
    assert errors[0] == errors[1] == errors[2]


def test_hash_is_upgraded_when_the_cost_is_raised(fast_app, monkeypatch):
    person = make_resident()
    old = db.session.get(Account, person.account_id).password_hash
    stamp = db.session.get(Account, person.account_id).password_set_at
    monkeypatch.setitem(
        fast_app.config, "PASSWORD_HASHING", {"time_cost": 2, "memory_cost": 2048, "parallelism": 1}
    )
    accounts.authenticate(person.login, PASSWORD, address=ADDRESS)
    account = db.session.get(Account, person.account_id)
    assert account.password_hash != old and "m=2048,t=2,p=1" in account.password_hash
    assert account.password_set_at == stamp  # the password itself did not change
    assert accounts.authenticate(person.login, PASSWORD, address=ADDRESS).id == account.id


# -- API -----------------------------------------------------------------------------------
def _staff_token(role="clerk"):
    """A staff member's access token through a station app (the project's own issuer)."""
    staff = make_staff(role)
    client, _secret = create_client(
        name="Station 3 app",
        kind="station",
        organisation="Station 3",
        scopes=["accounts:manage", "citizens:read"],
        grant_types=["authorization_code"],
        auth_method="none",
        redirect_uris=["http://127.0.0.1/cb"],
        site="station-3",
        actor=SYSTEM,
    )
    account = db.session.get(Account, staff.account_id)
    issued = issue_access_token(
        client_id=client.client_id,
        client_kind="station",
        organisation="Station 3",
        scopes=["accounts:manage"],
        account=account,
    )
    return {"Authorization": f"Bearer {issued.token}"}, staff


def _url(citizen_id):
    return f"/api/v1/citizens/{citizen_id}/account/password"


def test_api_sets_a_residents_password_for_staff(client):
    person = make_resident(password=None)
    headers, staff = _staff_token()
    r = client.post(_url(person.citizen_id), json={"password": "set at station 3"}, headers=headers)
    assert r.status_code == 200, r.get_data(as_text=True)
    body = r.get_json()
    assert body["account_id"] == person.account_id and body["citizen_id"] == person.citizen_id
    assert "password" not in body and "set at station 3" not in r.get_data(as_text=True)
    assert accounts.authenticate(person.login, "set at station 3", address=ADDRESS)
    event = db.session.scalars(
        select(AuditEvent)
        .where(AuditEvent.action == "account.password.set")
        .order_by(AuditEvent.id.desc())
    ).first()
    assert event.actor_type == "staff" and f"account:{staff.account_id}" in event.actor_id


def test_api_creates_the_account_when_missing(client, bearer):
    citizen = citizen_actions.create_citizen(
        {
            "national_id": new_national_id(),
            "name": "赵六",
            "district": "110105",
            "residence_type": "registered",
            "insurance_scheme": "employee",
            "employment_status": "employed",
        },
        actor=SYSTEM,
    )
    headers = bearer("accounts:manage", kind="station")
    r = client.post(_url(citizen.id), json={"password": "first one 1"}, headers=headers)
    assert r.status_code == 200
    account = db.session.scalars(select(Account).where(Account.citizen_id == citizen.id)).one()
    assert r.get_json()["account_id"] == account.id


def test_api_refusals(client, bearer):
    person = make_resident()
    headers, _staff = _staff_token()
    r = client.post(_url(person.citizen_id), json={"password": "x"})
    assert r.status_code == 401
    partner = bearer("accounts:manage")
    r = client.post(_url(person.citizen_id), json={"password": "a fine pass 1"}, headers=partner)
    assert r.status_code == 403 and r.mimetype == "application/problem+json"
    r = client.post(_url(person.citizen_id), json={"password": "1234567890"}, headers=headers)
    assert r.status_code == 422 and r.get_json()["code"] == "PASSWORD_REJECTED"
    assert "1234567890" not in r.get_data(as_text=True)
    r = client.post(_url(10**9), json={"password": "a fine pass 1"}, headers=headers)
    assert r.status_code == 404
    r = client.post(_url(person.citizen_id), json={}, headers=headers)
    assert r.status_code == 422
    citizen_actions.record_life_event(
        person.citizen_id, "deceased", effective_date=date(2025, 1, 1), actor=SYSTEM, reason="n"
    )
    r = client.post(_url(person.citizen_id), json={"password": "a fine pass 1"}, headers=headers)
    assert r.status_code == 409 and r.get_json()["code"] == "CITIZEN_NOT_ELIGIBLE"


# -- CLI -----------------------------------------------------------------------------------
def _cli(app, *args, input=None):
    return app.test_cli_runner().invoke(args=list(args), input=input)


def test_cli_create_staff_and_set_passwords(fast_app):
    r = _cli(
        fast_app,
        "accounts",
        "create-staff",
        "--username",
        "Li.Na",
        "--role",
        "admin",
        "--station",
        "hq",
        "--password-stdin",
        input="strong pass 1\n",
    )
    assert r.exit_code == 0, r.output
    account = accounts.find_account("li.na")
    assert (account.role, account.station) == ("admin", "hq")
    assert "strong pass 1" not in r.output
    # Typed twice when not from stdin.
    r = _cli(
        fast_app,
        "accounts",
        "set-password",
        "--username",
        "li.na",
        input="newer pass 2\nnewer pass 2\n",
    )
    assert r.exit_code == 0, r.output
    assert accounts.authenticate("li.na", "newer pass 2", address=ADDRESS)

    person = make_resident(password=None)
    r = _cli(
        fast_app,
        "accounts",
        "set-password",
        "--national-id",
        person.login,
        "--password-stdin",
        input="resident pass 3\n",
    )
    assert r.exit_code == 0, r.output
    assert accounts.authenticate(person.login, "resident pass 3", address=ADDRESS)
    r = _cli(
        fast_app,
        "accounts",
        "set-password",
        "--national-id",
        person.login,
        "--password-stdin",
        input="123456\n",
    )
    assert r.exit_code == 1 and "at least 8" in r.output
    r = _cli(fast_app, "accounts", "set-password", "--password-stdin", input="x\n")
    assert r.exit_code == 2


def test_cli_disable_enable_unlock(fast_app):
    person = make_resident()
    r = _cli(fast_app, "accounts", "disable", "--national-id", person.login, "--reason", "lost")
    assert r.exit_code == 0, r.output
    with pytest.raises(accounts.AccountUnusable):
        accounts.authenticate(person.login, PASSWORD, address=ADDRESS)
    assert (
        _cli(
            fast_app, "accounts", "enable", "--national-id", person.login, "--reason", "found"
        ).exit_code
        == 0
    )
    for _ in range(5):
        with pytest.raises(accounts.LoginFailed):
            accounts.authenticate(person.login, "wrong wrong", address=ADDRESS)
    with pytest.raises(accounts.LoginLocked):
        accounts.authenticate(person.login, PASSWORD, address=ADDRESS)
    r = _cli(fast_app, "accounts", "unlock", "--national-id", person.login)
    assert r.exit_code == 0 and "removed" in r.output
    assert accounts.authenticate(person.login, PASSWORD, address=ADDRESS)
