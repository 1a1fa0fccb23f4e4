"""The citizen table itself: encryption at rest, and what the database refuses on its own."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from citizen_card import pii
from citizen_card.citizens.models import Citizen
from citizen_card.citizens.national_id import make_national_id
from citizen_card.extensions import db
from tests.citizens.conftest import raw_citizen_row

CITIZEN = Citizen.__table__


def test_personal_data_is_encrypted_at_rest(make_citizen):
    citizen = make_citizen(name="王小明", phone="13912345678")
    national_id = citizen.national_id
    row = (
        db.session.execute(sa.text("SELECT * FROM citizen WHERE id = :id"), {"id": citizen.id})
        .mappings()
        .one()
    )
    for column in ("name", "national_id", "phone"):
        assert row[column].startswith("v1."), column
    stored = " ".join(str(v) for v in row.values())
    for plaintext in ("王小明", "小明", national_id, national_id[6:14], "13912345678", "12345678"):
        assert plaintext not in stored
    # ...and the ORM reads them back in clear.
    db.session.expire_all()
    again = db.session.get(Citizen, citizen.id)
    assert (again.name, again.national_id, again.phone) == ("王小明", national_id, "13912345678")


def test_database_refuses_a_duplicate_national_id_by_itself(make_citizen):
    first = make_citizen()
    # Straight to the table, past every check in the actions: the unique index still says no.
    with pytest.raises(IntegrityError) as exc:
        with db.session.begin_nested():
            db.session.execute(sa.insert(CITIZEN).values(raw_citizen_row(first.national_id)))
    assert "national_id_index" in str(exc.value)


def test_two_citizens_may_share_a_phone(make_citizen):
    a = make_citizen(phone="13700000000")
    b = make_citizen(phone="13700000000")
    assert a.phone_index == b.phone_index and a.id != b.id


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("sex", "X"),
        ("status", "gone"),
        ("residence_type", "visitor"),
        ("insurance_scheme", "private"),
        ("employment_status", "astronaut"),
    ],
)
def test_database_refuses_values_outside_the_enumerations(app_ctx, column, value):
    number = make_national_id("110101", date(1980, 1, 1), 3, "F")
    with pytest.raises(IntegrityError) as exc:
        with db.session.begin_nested():
            db.session.execute(
                sa.insert(CITIZEN).values(raw_citizen_row(number, **{column: value}))
            )
    assert f"ck_citizen_{column}_valid" in str(exc.value)


def test_database_keeps_phone_and_its_index_in_step(make_citizen):
    citizen = make_citizen()
    with pytest.raises(IntegrityError, match="ck_citizen_phone_index_in_step"):
        with db.session.begin_nested():
            db.session.execute(
                sa.update(CITIZEN).where(CITIZEN.c.id == citizen.id).values(phone_index=None)
            )


def test_migrated_check_constraints_match_the_model(app_ctx):
    # Autogenerate does not compare CHECK constraints, so `flask db check` cannot catch an
    # enumeration added to the model but not to a migration. This does.
    reflected = {
        c["name"]: " ".join(c["sqltext"].split())
        for c in sa.inspect(db.session.connection()).get_check_constraints("citizen")
    }
    declared = {
        c.name: " ".join(str(c.sqltext).split())
        for c in CITIZEN.constraints
        if isinstance(c, sa.CheckConstraint)
    }
    assert set(reflected) == set(declared)
    if db.session.get_bind().dialect.name == "sqlite":
        # SQLite keeps the text as written; PostgreSQL rewrites it (= ANY (ARRAY[...])).
        assert reflected == declared
    else:
        for name, text in declared.items():
            for value in text.split("'")[1::2]:
                assert f"'{value}'" in reflected[name], (name, value)


def test_repr_shows_no_personal_data(make_citizen):
    citizen = make_citizen(name="赵六")
    text = repr(citizen)
    assert "赵" not in text and citizen.national_id not in text and "138" not in text


def test_key_rotation_is_not_a_change_of_the_record(app, make_citizen):
    citizen = make_citizen(phone="13812345678")
    national_id = citizen.national_id
    db.session.expire_all()
    before = db.session.execute(
        sa.select(Citizen.updated_at, Citizen.version_id).where(Citizen.id == citizen.id)
    ).one()
    result = app.test_cli_runner().invoke(args=["keys", "rotate"])
    assert result.exit_code == 0, result.output
    db.session.expire_all()
    after = db.session.execute(
        sa.select(Citizen.updated_at, Citizen.version_id).where(Citizen.id == citizen.id)
    ).one()
    assert after == before  # no new version: a client's optimistic lock still holds
    stored = db.session.execute(
        sa.text("SELECT name, national_id, phone FROM citizen WHERE id = :id"), {"id": citizen.id}
    ).one()
    ring = pii.keyring()
    assert {ring.key_id_of(token) for token in stored} == {ring.active_key_id}
    again = db.session.get(Citizen, citizen.id)
    assert (again.national_id, again.phone) == (national_id, "13812345678")
