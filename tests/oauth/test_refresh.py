"""Refresh-token storage: hashed, single use, family revocation, purge.

The HTTP side (rotation through /oauth/token, reuse, revocation, concurrent use) is in
test_code_flow.py; these tests pin down the storage rules underneath.
"""

from __future__ import annotations

import hashlib
from datetime import UTC
from datetime import datetime
from datetime import timedelta

import pytest
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update

from citizen_card.audit.models import AuditEvent
from citizen_card.extensions import db
from citizen_card.oauth import refresh
from citizen_card.oauth.models import AuthorizationCode
from citizen_card.oauth.models import RefreshToken
from tests.oauth.conftest import make_resident


@pytest.fixture()
def person(fast_app, app_ctx):
    return make_resident()


def issue(person, client_id="part-1", family=None, scope="openid profile"):
    token, _lifetime = refresh.issue(
        client_id=client_id,
        account_id=person.account_id,
        scope=scope,
        family_id=family or refresh.new_family(),
    )
    db.session.commit()
    return token


def rows(**where):
    query = select(RefreshToken)
    for name, value in where.items():
        query = query.where(getattr(RefreshToken, name) == value)
    return list(db.session.scalars(query))


def test_only_the_hash_is_stored(person):
    token = issue(person)
    [row] = rows(account_id=person.account_id)
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in (row.token_hash, row.family_id)
    assert row.expires_at.replace(tzinfo=UTC) - row.issued_at.replace(tzinfo=UTC) == timedelta(
        days=30
    )


def test_a_token_is_spent_once_and_a_second_use_revokes_its_family(person):
    family = refresh.new_family()
    first = issue(person, family=family)
    handle = refresh.claim(first)
    assert (
        handle is not None
        and handle.family_id == family
        and handle.get_scope() == ("openid profile")
    )
    successor = issue(person, family=family)
    db.session.commit()
    other_family = issue(person)
    assert refresh.claim(first) is None  # reuse
    assert all(r.revoked_at is not None for r in rows(family_id=family))
    assert refresh.claim(successor) is None
    assert refresh.claim(other_family) is not None  # other families are untouched
    event = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "oauth.refresh.revoke_family")
    ).one()
    assert event.subject == f"refresh-family:{family}" and "presented again" in event.details


def test_a_failed_request_leaves_the_token_unspent(person):
    token = issue(person)
    assert refresh.claim(token) is not None
    db.session.rollback()  # the token request failed after the claim
    assert refresh.claim(token) is not None


def test_expired_unknown_and_revoked_tokens(person):
    token = issue(person)
    db.session.execute(
        update(RefreshToken).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    )
    db.session.commit()
    assert refresh.claim(token) is None
    assert refresh.claim("not-a-token") is None
    revoked = issue(person)
    assert refresh.revoke_account(person.account_id, reason="test") == 1
    assert refresh.claim(revoked) is None


def test_revoke_account_for_one_client(person):
    a, b = issue(person, client_id="part-a"), issue(person, client_id="part-b")
    assert refresh.revoke_account(person.account_id, reason="consent", client_id="part-a") == 1
    assert refresh.claim(a) is None
    assert refresh.claim(b) is not None


def test_find_sees_tokens_in_any_state(person):
    token = issue(person, client_id="part-x")
    refresh.claim(token)
    db.session.commit()
    found = refresh.find(token)
    assert found is not None and found.client_id == "part-x"
    assert found.check_client(type("C", (), {"client_id": "part-x"})())
    assert not found.check_client(type("C", (), {"client_id": "part-y"})())
    assert refresh.find("nope") is None


def test_purge_removes_expired_tokens_and_old_codes(person):
    issue(person)
    issue(person)
    db.session.add(
        AuthorizationCode(
            code_hash="0" * 64,
            client_id="part-1",
            account_id=person.account_id,
            redirect_uri="http://127.0.0.1/cb",
            scope="openid",
            code_challenge="c" * 43,
            code_challenge_method="S256",
            auth_time=0,
            expires_at=datetime.now(UTC) - timedelta(days=31),
        )
    )
    db.session.execute(
        update(RefreshToken).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    )
    db.session.commit()
    assert refresh.purge() == 3
    assert db.session.scalar(select(func.count()).select_from(RefreshToken)) == 0
