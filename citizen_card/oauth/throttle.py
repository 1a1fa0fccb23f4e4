"""Slowing password guessing at /oauth/login without letting an attacker lock people out.

Three counters live in ``oauth_login_throttle``, each row keyed by a keyed hash (no login name
or address is stored in clear):

- **pair** (login name + address): 5 consecutive failures lock that pair for 1 minute, each
  further failure after the lock doubles it (2, 4, 8) up to 15 minutes. The resident signing in
  from their own address is not locked by someone guessing from elsewhere: that is the point.
- **address**: 30 failures within 10 minutes block the address for 10 minutes, for every login
  name (one address spraying many accounts).
- **account** (login name, any address): 50 failures within an hour lock it for 15 minutes
  (a distributed attack on one account).

Every lock expires (nothing is ever permanent); a successful sign-in after a lock resets its
pair; a password reset at a station clears the login's locks. The counters are keyed by the
login name's blind index whether or not an account exists, so locks behave identically for
unknown names and reveal nothing. The windows are fixed (they start at the first failure), a
deliberate approximation of sliding windows that needs one row per key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from citizen_card.audit.actions import Actor
from citizen_card.audit.actions import record as audit
from citizen_card.extensions import db
from citizen_card.oauth.models import LoginThrottle
from citizen_card.oauth.refresh import as_utc
from citizen_card.pii import keyring

PAIR_THRESHOLD = 5
PAIR_BACKOFF = tuple(timedelta(minutes=m) for m in (1, 2, 4, 8, 15))
# A streak is forgotten after this long without a failure (a typo last week is no attack).
PAIR_STREAK_RESET = timedelta(hours=24)
ADDRESS_LIMIT = 30
ADDRESS_WINDOW = timedelta(minutes=10)
ADDRESS_LOCK = timedelta(minutes=10)
ACCOUNT_LIMIT = 50
ACCOUNT_WINDOW = timedelta(hours=1)
ACCOUNT_LOCK = timedelta(minutes=15)

_ADDRESS_CONTEXT = "oauth.throttle.address"
THROTTLE_ACTOR = Actor.system("login-throttle")


@dataclass(frozen=True)
class ThrottleKeys:
    """The three counter keys of one sign-in attempt."""

    pair: str
    address: str
    account: str

    def all(self) -> tuple[str, str, str]:
        """Every key."""
        return (self.pair, self.address, self.account)


def _account_part(login_index: str) -> str:
    return login_index[:32]


def keys_for(login_index: str, address: str) -> ThrottleKeys:
    """The keys for a login name's blind index and a client address (128-bit prefixes)."""
    addr = keyring().blind_index(address or "-", _ADDRESS_CONTEXT)[:32]
    account = _account_part(login_index)
    return ThrottleKeys(f"pair:{account}:{addr}", f"addr:{addr}", f"acct:{account}")


def locked_until(keys: ThrottleKeys) -> datetime | None:
    """When the latest lock in force on any of the keys ends, or None when none is."""
    now = datetime.now(UTC)
    ends = [
        as_utc(until)
        for until in db.session.scalars(
            select(LoginThrottle.locked_until).where(
                LoginThrottle.key.in_(keys.all()), LoginThrottle.locked_until.is_not(None)
            )
        )
        if until is not None and as_utc(until) > now
    ]
    return max(ends) if ends else None


def _row(key: str, now: datetime) -> LoginThrottle:
    """The counter row, locked for update (PostgreSQL), created when missing."""
    query = select(LoginThrottle).where(LoginThrottle.key == key).with_for_update()
    row = db.session.scalars(query).first()
    if row is not None:
        return row
    try:
        with db.session.begin_nested():
            row = LoginThrottle(key=key, failures=0, window_started=now, locked_until=None)
            db.session.add(row)
    except IntegrityError:
        # Another request created it meanwhile: use theirs.
        row = db.session.scalars(query).one()
    return row


def _count(row: LoginThrottle, now: datetime, window: timedelta) -> None:
    """Add one failure, restarting the window when it has passed."""
    if now - as_utc(row.window_started) >= window:
        row.failures = 0
        row.window_started = now
    row.failures += 1


def _lock(row: LoginThrottle, now: datetime, span: timedelta) -> datetime:
    until = now + span
    row.locked_until = until
    return until


def record_failure(
    keys: ThrottleKeys, *, address: str, account_id: int | None, citizen_id: int | None
) -> list[str]:
    """Count a failed sign-in on all three keys; return the locks it set (caller commits).

    Each new lock is audited (who is targeted when known, from which address, until when).
    """
    now = datetime.now(UTC)
    locked: list[str] = []

    pair = _row(keys.pair, now)
    _count(pair, now, PAIR_STREAK_RESET)
    # For a pair the "window" is the quiet time since the last failure, not a fixed span.
    pair.window_started = now
    if pair.failures >= PAIR_THRESHOLD:
        step = min(pair.failures - PAIR_THRESHOLD, len(PAIR_BACKOFF) - 1)
        locked.append("pair")
        until = _lock(pair, now, PAIR_BACKOFF[step])
        _audit_lock("pair", until, pair.failures, address, account_id, citizen_id)

    for scope, key, limit, window, span in (
        ("address", keys.address, ADDRESS_LIMIT, ADDRESS_WINDOW, ADDRESS_LOCK),
        ("account", keys.account, ACCOUNT_LIMIT, ACCOUNT_WINDOW, ACCOUNT_LOCK),
    ):
        row = _row(key, now)
        _count(row, now, window)
        already = row.locked_until is not None and as_utc(row.locked_until) > now
        if row.failures >= limit and not already:
            locked.append(scope)
            until = _lock(row, now, span)
            _audit_lock(scope, until, row.failures, address, account_id, citizen_id)
    return locked


def _audit_lock(
    scope: str,
    until: datetime,
    failures: int,
    address: str,
    account_id: int | None,
    citizen_id: int | None,
) -> None:
    audit(
        "account.login.lockout",
        actor=THROTTLE_ACTOR,
        citizen_id=citizen_id if scope != "address" else None,
        subject=f"account:{account_id}" if account_id is not None else "account:unknown",
        outcome="locked",
        details={
            "scope": scope,
            "locked_until": until.isoformat(timespec="seconds"),
            "failures": failures,
            "address": address,
        },
    )


def record_success(keys: ThrottleKeys) -> None:
    """A correct password: forget the pair's streak (caller commits)."""
    db.session.execute(delete(LoginThrottle).where(LoginThrottle.key == keys.pair))


def clear_login(login_index: str) -> int:
    """Lift every lock and streak on a login name (after a reset at a station; caller commits)."""
    part = _account_part(login_index)
    result = db.session.execute(
        delete(LoginThrottle).where(
            or_(LoginThrottle.key == f"acct:{part}", LoginThrottle.key.startswith(f"pair:{part}:"))
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


def purge() -> int:
    """Delete counters that neither lock nor count any more (caller commits)."""
    now = datetime.now(UTC)
    stale = now - max(PAIR_STREAK_RESET, ACCOUNT_WINDOW, ADDRESS_WINDOW)
    result = db.session.execute(
        delete(LoginThrottle).where(
            LoginThrottle.window_started < stale,
            or_(LoginThrottle.locked_until.is_(None), LoginThrottle.locked_until < now),
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)
