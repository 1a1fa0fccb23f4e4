"""People who sign in: residents (one account per citizen) and station staff.

A resident's login name is their national ID number and a staff member's a username; neither is
stored, only ``login_index``, a blind index under the context ``account.login`` (deliberately
not the citizen table's context, so the two indexes cannot be joined). A resident's account is
created without a password and becomes usable once a clerk sets one at a station. Passwords are
hashed with argon2id; a hash made with older cost settings is upgraded at the next sign-in.

The API at the end (``POST /api/v1/citizens/<id>/account/password``) is for station staff and
station clients only.
"""

from __future__ import annotations

import re
import secrets
import threading
from datetime import UTC
from datetime import datetime
from typing import Any

import marshmallow as ma
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError
from argon2.exceptions import VerificationError
from argon2.exceptions import VerifyMismatchError
from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import select

from citizen_card.audit.actions import Actor
from citizen_card.audit.actions import record as audit
from citizen_card.citizens.actions import CitizenNotFound
from citizen_card.citizens.models import NATIONAL_ID_CONTEXT
from citizen_card.citizens.models import Citizen
from citizen_card.citizens.national_id import NationalIdError
from citizen_card.citizens.national_id import parse_national_id
from citizen_card.errors import Conflict
from citizen_card.errors import DomainError
from citizen_card.errors import NotFound
from citizen_card.extensions import db
from citizen_card.oauth import refresh
from citizen_card.oauth import throttle
from citizen_card.oauth.models import Account
from citizen_card.oauth.protect import current_principal
from citizen_card.oauth.protect import require_scopes
from citizen_card.pii import keyring
from citizen_card.pii import normalize

LOGIN_CONTEXT = "account.login"
STAFF_ROLES = ("clerk", "supervisor", "admin")
MIN_PASSWORD_LENGTH = 8
# Bounds the hashing work one request can ask for; no real password is longer.
MAX_PASSWORD_LENGTH = 128
# Starts with a letter: a username can never look like a national ID (digits, maybe a final X).
_USERNAME_RE = re.compile(r"^[a-z][a-z0-9._-]{2,31}\Z")


# -- errors --------------------------------------------------------------------------------
class PasswordRejected(DomainError):
    """The new password breaks the password rules."""

    status = 422
    code = "PASSWORD_REJECTED"
    title = "Password not acceptable"
    title_zh = "密码不符合要求"


class CitizenNotEligible(Conflict):
    """The citizen is deceased or has moved away: no account may be (re)activated."""

    code = "CITIZEN_NOT_ELIGIBLE"
    title = "Citizen cannot hold an account"
    title_zh = "该居民不能使用账户"


class AccountNotFound(NotFound):
    """No account for that login name or id."""

    code = "ACCOUNT_NOT_FOUND"
    title = "Account not found"
    title_zh = "账户不存在"


class InvalidStaffAccount(DomainError):
    """The staff account's username, role or station is not acceptable."""

    status = 422
    code = "INVALID_STAFF_ACCOUNT"
    title = "Invalid staff account"
    title_zh = "工作人员账户信息无效"


class UsernameTaken(Conflict):
    """A staff account with that username exists."""

    code = "USERNAME_TAKEN"
    title = "Username taken"
    title_zh = "用户名已被使用"


class LoginFailed(DomainError):
    """Wrong login name or password; deliberately says nothing about which."""

    status = 401
    code = "LOGIN_FAILED"
    title = "Wrong ID number, username or password"
    title_zh = "证件号码、用户名或密码错误"


class LoginLocked(DomainError):
    """Too many failures: sign-in from here (or for this name) is paused until ``until``."""

    status = 429
    code = "LOGIN_LOCKED"
    title = "Too many failed sign-ins; try again later"
    title_zh = "登录失败次数过多，请稍后再试"

    def __init__(self, until: datetime) -> None:
        super().__init__(None)
        self.until = until


class AccountUnusable(DomainError):
    """The password was right but the account may not sign in (disabled, citizen not active)."""

    status = 403
    code = "ACCOUNT_UNUSABLE"
    title = "This account cannot sign in; please visit a service station"
    title_zh = "该账户无法登录，请到社区服务站办理"


# -- passwords -----------------------------------------------------------------------------
_hashers: dict[tuple[int, int, int], tuple[PasswordHasher, str]] = {}
_hashers_lock = threading.Lock()


def _hasher() -> tuple[PasswordHasher, str]:
    """The argon2id hasher for the configured cost, and a dummy hash made with it."""
    params = current_app.config["PASSWORD_HASHING"]
    key = (int(params["time_cost"]), int(params["memory_cost"]), int(params["parallelism"]))
    found = _hashers.get(key)
    if found is None:
        with _hashers_lock:
            found = _hashers.get(key)
            if found is None:
                hasher = PasswordHasher(time_cost=key[0], memory_cost=key[1], parallelism=key[2])
                # Verified against when there is no account, so an unknown login name costs
                # the same time as a known one.
                found = (hasher, hasher.hash(secrets.token_urlsafe(16)))
                _hashers[key] = found
    return found


def hash_password(password: str) -> str:
    """An argon2id hash of password with the configured cost."""
    return _hasher()[0].hash(password)


def _verify(stored: str | None, password: str) -> bool:
    hasher, dummy = _hasher()
    # Too long to be anyone's password: still spend the time, then say no.
    too_long = len(password) > MAX_PASSWORD_LENGTH
    try:
        hasher.verify(
            dummy if stored is None or too_long else stored, password[:MAX_PASSWORD_LENGTH]
        )
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    return stored is not None and not too_long


def check_password_rules(password: str, login_name: str) -> None:
    """Raise PasswordRejected unless password is 8-128 characters, not only digits, no login name.

    Only digits is refused at any length: such a password is a PIN (the card's is 6 digits) or
    a birth date or phone number, all far easier to guess than their length suggests.
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordRejected(
            f"a password needs at least {MIN_PASSWORD_LENGTH} characters", rule="min_length"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise PasswordRejected(
            f"a password has at most {MAX_PASSWORD_LENGTH} characters", rule="max_length"
        )
    if normalize(login_name) and normalize(login_name) in normalize(password):
        raise PasswordRejected(
            "a password must not contain the login name (ID number or username)",
            rule="contains_login",
        )
    if password.isdigit():
        raise PasswordRejected(
            "a password of digits only is a PIN, not a password: add letters", rule="not_a_pin"
        )


# -- lookups -------------------------------------------------------------------------------
def login_index(login_name: str) -> str:
    """The blind index of a login name (national ID or username), normalised first."""
    return keyring().blind_index(login_name, LOGIN_CONTEXT)


def find_account(login_name: str) -> Account | None:
    """The account with that login name, if any."""
    index = login_index(login_name)
    return db.session.scalars(select(Account).where(Account.login_index == index)).first()


def password_stamp(account: Account) -> str:
    """Changes whenever the password does: sign-in sessions made before a reset stop working."""
    return refresh.as_utc(account.password_set_at).isoformat() if account.password_set_at else ""


def account_is_usable(account: Account) -> bool:
    """Active, has a password, and (residents) the citizen is still active."""
    if account.status != "active" or not account.password_hash:
        return False
    if account.kind == "resident":
        citizen = db.session.get(Citizen, account.citizen_id)
        return citizen is not None and citizen.status == "active"
    return account.role in STAFF_ROLES


# -- actions -------------------------------------------------------------------------------
def _eligible_citizen(citizen_id: int) -> Citizen:
    citizen = db.session.get(Citizen, citizen_id)
    if citizen is None:
        raise CitizenNotFound(f"no citizen has id {citizen_id}")
    if citizen.status != "active":
        raise CitizenNotEligible(
            f"citizen {citizen_id} is {citizen.status}", current_status=citizen.status
        )
    return citizen


def _resident_account(citizen: Citizen) -> Account | None:
    return db.session.scalars(select(Account).where(Account.citizen_id == citizen.id)).first()


def _new_resident_account(citizen: Citizen, now: datetime) -> Account:
    account = Account(
        kind="resident",
        login_index=login_index(citizen.national_id),
        citizen_id=citizen.id,
        status="active",
        created_at=now,
    )
    db.session.add(account)
    db.session.flush()
    return account


def create_resident_account(citizen_id: int, *, actor: Actor) -> Account:
    """Open a citizen's account without a password (it cannot sign in until one is set)."""
    citizen = _eligible_citizen(citizen_id)
    account = _resident_account(citizen)
    if account is not None:
        return account
    account = _new_resident_account(citizen, datetime.now(UTC))
    audit("account.create", actor=actor, citizen_id=citizen.id, subject=f"account:{account.id}")
    db.session.commit()
    return account


def set_resident_password(citizen_id: int, new_password: str, *, actor: Actor) -> Account:
    """Set a resident's password at a station, creating the account if needed.

    Refused for a deceased or moved-away citizen. A reset also lifts the sign-in locks on the
    account and revokes its refresh tokens (a reset often follows a suspected compromise).
    """
    citizen = _eligible_citizen(citizen_id)
    check_password_rules(new_password, citizen.national_id)
    now = datetime.now(UTC)
    account = _resident_account(citizen)
    created = account is None
    if account is None:
        account = _new_resident_account(citizen, now)
    _set_password(account, new_password, now, actor=actor, created=created)
    db.session.commit()
    return account


def set_resident_password_by_national_id(
    national_id: str, new_password: str, *, actor: Actor
) -> Account:
    """set_resident_password for the citizen with that national ID (the CLI's way in)."""
    try:
        number = parse_national_id(national_id).number
    except NationalIdError as exc:
        raise CitizenNotFound(str(exc)) from None
    index = keyring().blind_index(number, NATIONAL_ID_CONTEXT)
    citizen_id = db.session.scalar(select(Citizen.id).where(Citizen.national_id_index == index))
    if citizen_id is None:
        raise CitizenNotFound("no citizen has that national ID")
    return set_resident_password(citizen_id, new_password, actor=actor)


def _set_password(
    account: Account, new_password: str, now: datetime, *, actor: Actor, created: bool
) -> None:
    account.password_hash = hash_password(new_password)
    account.password_set_at = now
    throttle.clear_login(account.login_index)
    revoked = refresh.revoke_account(account.id, reason="password reset")
    audit(
        "account.password.set",
        actor=actor,
        citizen_id=account.citizen_id,
        subject=f"account:{account.id}",
        details={"account_created": created, "refresh_tokens_revoked": revoked},
    )


def create_staff_account(
    username: str,
    *,
    role: str,
    station: str,
    password: str,
    actor: Actor,
    display_name: str | None = None,
) -> Account:
    """Create a staff account with its role and station."""
    username = username.strip().lower()
    if not _USERNAME_RE.match(username):
        raise InvalidStaffAccount(
            "username: 3-32 characters a-z 0-9 . _ -, starting with a letter", field="username"
        )
    if role not in STAFF_ROLES:
        raise InvalidStaffAccount(f"role must be one of {', '.join(STAFF_ROLES)}", field="role")
    station = station.strip()
    if not 1 <= len(station) <= 64:
        raise InvalidStaffAccount("station: 1-64 characters", field="station")
    check_password_rules(password, username)
    if find_account(username) is not None:
        raise UsernameTaken(f"username {username!r} is taken")
    now = datetime.now(UTC)
    account = Account(
        kind="staff",
        login_index=login_index(username),
        display_name=(display_name or username)[:200],
        password_hash=hash_password(password),
        password_set_at=now,
        role=role,
        station=station,
        status="active",
        created_at=now,
    )
    db.session.add(account)
    db.session.flush()
    audit(
        "account.create",
        actor=actor,
        subject=f"account:{account.id}",
        details={"kind": "staff", "role": role, "station": station},
    )
    db.session.commit()
    return account


def set_staff_password(username: str, new_password: str, *, actor: Actor) -> Account:
    """Reset a staff member's password (and lift their locks, revoke their refresh tokens)."""
    account = find_account(username.strip().lower())
    if account is None or account.kind != "staff":
        raise AccountNotFound("no staff account has that username")
    check_password_rules(new_password, username.strip().lower())
    _set_password(account, new_password, datetime.now(UTC), actor=actor, created=False)
    db.session.commit()
    return account


def set_account_status(account_id: int, status: str, *, actor: Actor, reason: str) -> Account:
    """Disable or re-enable an account; disabling also revokes its refresh tokens."""
    account = db.session.get(Account, account_id)
    if account is None:
        raise AccountNotFound(f"no account has id {account_id}")
    if account.status == status:
        raise Conflict(f"account is already {status}", current_status=status)
    account.status = status
    revoked = (
        refresh.revoke_account(account.id, reason=f"account {status}")
        if (status == "disabled")
        else 0
    )
    audit(
        "account.disable" if status == "disabled" else "account.enable",
        actor=actor,
        citizen_id=account.citizen_id,
        subject=f"account:{account.id}",
        purpose=reason,
        details={"refresh_tokens_revoked": revoked},
    )
    db.session.commit()
    return account


def unlock(login_name: str, *, actor: Actor) -> int:
    """Lift every sign-in lock on a login name (an operator's remedy); returns rows removed."""
    removed = throttle.clear_login(login_index(login_name))
    account = find_account(login_name)
    audit(
        "account.unlock",
        actor=actor,
        citizen_id=account.citizen_id if account else None,
        subject=f"account:{account.id}" if account else "account:unknown",
        details={"counters_removed": removed},
    )
    db.session.commit()
    return removed


def authenticate(login_name: str, password: str, *, address: str) -> Account:
    """Check a sign-in; the account, or LoginLocked / LoginFailed / AccountUnusable.

    Throttled per login name and address pair, per address and per login name (throttle.py).
    An unknown name is checked against a dummy hash, so it answers with the same message and
    in about the same time as a wrong password; locks treat both alike too.
    """
    index = login_index(login_name)
    keys = throttle.keys_for(index, address)
    until = throttle.locked_until(keys)
    if until is not None:
        raise LoginLocked(until)
    account = db.session.scalars(select(Account).where(Account.login_index == index)).first()
    if not _verify(account.password_hash if account else None, password):
        throttle.record_failure(
            keys,
            address=address,
            account_id=account.id if account else None,
            citizen_id=account.citizen_id if account else None,
        )
        db.session.commit()
        raise LoginFailed()
    assert account is not None and account.password_hash is not None  # _verify said so
    throttle.record_success(keys)
    hasher, _dummy = _hasher()
    if hasher.check_needs_rehash(account.password_hash):
        # Cost settings were raised since this hash was made: upgrade it while we have the
        # password (password_set_at stays: the password itself did not change).
        account.password_hash = hasher.hash(password)
    usable = account_is_usable(account)
    audit(
        "account.login",
        actor=Actor(account.kind, f"account:{account.id}"),
        citizen_id=account.citizen_id,
        subject=f"account:{account.id}",
        outcome="ok" if usable else "refused",
    )
    db.session.commit()
    if not usable:
        raise AccountUnusable()
    return account


# -- API -----------------------------------------------------------------------------------
blp = Blueprint(
    "accounts",
    __name__,
    url_prefix="/api/v1/citizens",
    description="Residents' sign-in accounts (scope accounts:manage, station staff only)",
)


class PasswordSetSchema(ma.Schema):
    """A new password for a resident (never echoed back, never logged)."""

    password = ma.fields.String(
        required=True,
        load_only=True,
        validate=ma.validate.Length(min=1, max=MAX_PASSWORD_LENGTH),
    )


class AccountSchema(ma.Schema):
    """A resident's account, without anything secret."""

    account_id = ma.fields.Integer(attribute="id")
    citizen_id = ma.fields.Integer()
    status = ma.fields.String()
    password_set_at = ma.fields.DateTime()
    created_at = ma.fields.DateTime()


@blp.route("/<int:citizen_id>/account/password")
class ResidentPassword(MethodView):
    """A resident's password, set at a station."""

    @require_scopes("accounts:manage", kinds=("staff", "station"))
    @blp.arguments(PasswordSetSchema())
    @blp.response(200, AccountSchema)
    def post(self, data: dict[str, Any], citizen_id: int) -> Any:
        """Set a resident's password (creating the account); lifts locks, ends sessions"""
        return set_resident_password(citizen_id, data["password"], actor=current_principal().actor)
