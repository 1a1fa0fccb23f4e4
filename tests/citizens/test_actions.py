"""Registry actions against the real database: the rules, the audit trail, the transactions."""

from __future__ import annotations

import json
from datetime import date
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError

from citizen_card.audit.models import AuditEvent
from citizen_card.citizens import actions
from citizen_card.citizens.actions import CitizenDataInvalid
from citizen_card.citizens.actions import CitizenFieldNotUpdatable
from citizen_card.citizens.actions import CitizenNotFound
from citizen_card.citizens.actions import CitizenStateConflict
from citizen_card.citizens.actions import CitizenVersionStale
from citizen_card.citizens.actions import DistrictUnknown
from citizen_card.citizens.actions import NationalIdDuplicate
from citizen_card.citizens.actions import NationalIdInvalid
from citizen_card.citizens.actions import PurposeInvalid
from citizen_card.citizens.actions import PurposeRequired
from citizen_card.citizens.models import PHONE_CONTEXT
from citizen_card.citizens.models import Citizen
from citizen_card.citizens.national_id import china_today
from citizen_card.citizens.national_id import make_national_id
from citizen_card.errors import handle_domain_error
from citizen_card.extensions import db
from citizen_card.pii import blind_index
from tests.citizens.conftest import PARTNER
from tests.citizens.conftest import STAFF
from tests.citizens.conftest import TERMINAL
from tests.citizens.conftest import citizen_data
from tests.citizens.conftest import raw_citizen_row
from tests.conftest import is_postgres


def _events(action: str) -> list[AuditEvent]:
    """The committed audit events of one action (whatever is still pending is dropped first)."""
    db.session.rollback()
    return list(
        db.session.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        )
    )


def _count_citizens() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(Citizen)) or 0


# -- create --------------------------------------------------------------------------------
def test_create_derives_birth_date_and_sex_and_audits(app_ctx):
    number = make_national_id("110105", date(1985, 6, 30), 10, "F")
    citizen = actions.create_citizen(citizen_data(national_id=number), actor=STAFF)
    assert citizen.id is not None
    assert (citizen.birth_date, citizen.sex) == (date(1985, 6, 30), "F")
    assert (citizen.status, citizen.version_id) == ("active", 1)
    assert citizen.created_at == citizen.updated_at == citizen.status_changed_at
    (created,) = _events("citizen.create")
    assert (created.actor_type, created.actor_id, created.citizen_id) == (
        "staff",
        "clerk-7",
        citizen.id,
    )
    details = json.loads(created.details)
    assert "national_id" in details["fields"] and "phone" in details["fields"]
    # Field names only: none of the values reach the plaintext audit trail.
    assert number not in created.details and "张三丰" not in created.details
    assert "13812345678" not in created.details


def test_create_normalises_the_national_id(app_ctx):
    number = "11010519491231002X"
    typed = " 110105 19491231 002x "
    citizen = actions.create_citizen(citizen_data(national_id=typed), actor=STAFF)
    db.session.expire_all()
    assert db.session.get(Citizen, citizen.id).national_id == number


def test_create_strips_the_name_and_phone(app_ctx):
    citizen = actions.create_citizen(
        citizen_data(name="  王五 ", phone=" 139 1234 5678 "), actor=STAFF
    )
    assert (citizen.name, citizen.phone) == ("王五", "13912345678")
    assert citizen.phone_index == blind_index("13912345678", PHONE_CONTEXT)


def test_create_without_phone(app_ctx):
    data = citizen_data()
    del data["phone"]
    citizen = actions.create_citizen(data, actor=STAFF)
    assert citizen.phone is None and citizen.phone_index is None


def test_duplicate_national_id_is_409_naming_the_existing_record(make_citizen):
    first = make_citizen()
    before = _count_citizens()
    retyped = first.national_id[:17] + first.national_id[17].lower() + " "
    with pytest.raises(NationalIdDuplicate) as exc:
        actions.create_citizen(citizen_data(national_id=retyped, name="冒名"), actor=STAFF)
    assert exc.value.status == 409 and exc.value.code == "DUPLICATE_NATIONAL_ID"
    assert exc.value.extensions == {"existing_citizen_id": first.id}
    assert _count_citizens() == before
    assert len(_events("citizen.create")) == 1


def test_duplicate_renders_as_a_problem_with_the_existing_id(app, make_citizen):
    first = make_citizen()
    with pytest.raises(NationalIdDuplicate) as exc:
        actions.create_citizen(citizen_data(national_id=first.national_id), actor=STAFF)
    with app.test_request_context("/api/v1/citizens", headers={"Accept-Language": "en"}):
        response = handle_domain_error(exc.value)
    body = response.get_json(force=True)
    assert response.status_code == 409
    assert body["type"] == "/problems/core/duplicate-national-id"
    assert body["code"] == "DUPLICATE_NATIONAL_ID"
    assert body["existing_citizen_id"] == first.id
    assert first.national_id not in json.dumps(body)


@pytest.mark.no_isolation
def test_a_registration_racing_past_the_check_gets_the_same_409(committed_app):
    if not is_postgres(committed_app):
        pytest.skip(
            "SQLite serialises writers (BEGIN IMMEDIATE at the check): two registrations of"
            " one person can never race there"
        )
    with committed_app.app_context():
        data = citizen_data()
        competitor: dict[str, int] = {}

        def register_elsewhere_first(mapper, connection, target):
            # Another worker registers the same person and commits between our duplicate
            # check and our INSERT: only the unique index can stop us now.
            with db.engine.connect() as other:
                result = other.execute(
                    sa.insert(Citizen.__table__).values(raw_citizen_row(data["national_id"]))
                )
                competitor["id"] = result.inserted_primary_key[0]
                other.commit()

        event.listen(Citizen, "before_insert", register_elsewhere_first)
        try:
            with pytest.raises(NationalIdDuplicate) as exc:
                actions.create_citizen(data, actor=STAFF)
        finally:
            event.remove(Citizen, "before_insert", register_elsewhere_first)
        assert exc.value.extensions == {"existing_citizen_id": competitor["id"]}
        assert _count_citizens() == 1
        assert _events("citizen.create") == []


def test_an_integrity_error_that_is_not_a_duplicate_is_not_disguised(app_ctx):
    def break_the_row(mapper, connection, target):
        target.sex = "X"  # the CHECK refuses it: not a duplicate, must not become a 409

    event.listen(Citizen, "before_insert", break_the_row)
    try:
        with pytest.raises(IntegrityError, match="ck_citizen_sex_valid"):
            actions.create_citizen(citizen_data(), actor=STAFF)
    finally:
        event.remove(Citizen, "before_insert", break_the_row)
    assert _count_citizens() == 0


def test_invalid_check_digit_is_422_saying_so(app_ctx):
    number = make_national_id("110105", date(1990, 1, 1), 5, "M")
    wrong = number[:17] + ("0" if number[17] != "0" else "1")
    with pytest.raises(NationalIdInvalid) as exc:
        actions.create_citizen(citizen_data(national_id=wrong), actor=STAFF)
    assert (exc.value.status, exc.value.code) == (422, "INVALID_NATIONAL_ID")
    assert "check digit" in exc.value.detail
    assert exc.value.extensions == {"check": "check_digit"}
    assert _count_citizens() == 0 and _events("citizen.create") == []


@pytest.mark.parametrize(
    ("national_id", "check"),
    [
        ("1234", "format"),
        (12345, "format"),
        ("99010519900101001" + "0", "region"),
        ("11010519900231001" + "0", "birth_date"),
    ],
)
def test_invalid_national_id_names_the_failed_check(app_ctx, national_id, check):
    with pytest.raises(NationalIdInvalid) as exc:
        actions.create_citizen(citizen_data(national_id=national_id), actor=STAFF)
    assert exc.value.extensions["check"] == check


def test_unknown_district_is_422(app_ctx):
    with pytest.raises(DistrictUnknown) as exc:
        actions.create_citizen(citizen_data(district="310101"), actor=STAFF)
    assert (exc.value.status, exc.value.code) == (422, "UNKNOWN_DISTRICT")
    assert exc.value.extensions == {"district": "310101"}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"residence_type": "tourist"}, "residence_type"),
        ({"insurance_scheme": "private"}, "insurance_scheme"),
        ({"employment_status": None}, "employment_status"),
        ({"name": "   "}, "name"),
        ({"name": "名" * 65}, "name"),
        ({"phone": "12345678901"}, "phone"),
        ({"phone": "1381234567\n"}, "phone"),
        ({"sex": "F"}, "sex"),  # derived from the ID, never given
    ],
)
def test_create_refuses_bad_fields(app_ctx, overrides, field):
    with pytest.raises(CitizenDataInvalid) as exc:
        actions.create_citizen(citizen_data(**overrides), actor=STAFF)
    assert exc.value.extensions == {"field": field}
    assert _count_citizens() == 0


# -- read ----------------------------------------------------------------------------------
def test_staff_masked_read_is_not_audited(make_citizen):
    citizen = make_citizen()
    assert actions.get_citizen(citizen.id, actor=STAFF).id == citizen.id
    assert _events("citizen.read") == []


def test_staff_pii_read_is_audited_with_the_unmasked_fields(make_citizen):
    citizen = make_citizen()
    actions.get_citizen(citizen.id, actor=STAFF, pii=True, purpose="counter service")
    (read,) = _events("citizen.read")
    assert (read.citizen_id, read.purpose, read.outcome) == (citizen.id, "counter service", "ok")
    assert json.loads(read.details) == {
        "unmasked_fields": ["name", "national_id", "phone", "birth_date"]
    }


@pytest.mark.parametrize("actor", [PARTNER, TERMINAL])
@pytest.mark.parametrize("purpose", [None, "", "   "])
def test_partner_read_without_purpose_is_refused_and_audited(make_citizen, actor, purpose):
    citizen = make_citizen()
    with pytest.raises(PurposeRequired) as exc:
        actions.get_citizen(citizen.id, actor=actor, purpose=purpose)
    assert (exc.value.status, exc.value.code) == (400, "PURPOSE_REQUIRED")
    (refused,) = _events("citizen.read")
    assert (refused.actor_type, refused.actor_id) == (actor.type, actor.id)
    assert (refused.citizen_id, refused.outcome, refused.purpose) == (citizen.id, "refused", None)
    assert json.loads(refused.details)["refused"] == "purpose_required"


def test_partner_read_with_purpose_is_audited(make_citizen):
    citizen = make_citizen()
    got = actions.get_citizen(citizen.id, actor=PARTNER, purpose=" 门诊挂号 outpatient booking ")
    assert got.id == citizen.id
    (read,) = _events("citizen.read")
    assert (read.actor_type, read.actor_id) == ("client", "hospital-1")
    assert (read.citizen_id, read.outcome) == (citizen.id, "ok")
    assert read.purpose == "门诊挂号 outpatient booking"
    assert json.loads(read.details) == {"unmasked_fields": []}


def test_purpose_longer_than_the_audit_column_is_refused(make_citizen):
    citizen = make_citizen()
    with pytest.raises(PurposeInvalid):
        actions.get_citizen(citizen.id, actor=PARTNER, purpose="x" * 257)
    assert actions.get_citizen(citizen.id, actor=PARTNER, purpose="x" * 256).id == citizen.id


def test_missing_citizen_is_404_and_a_partner_probe_is_audited(app_ctx):
    with pytest.raises(CitizenNotFound) as exc:
        actions.get_citizen(999999, actor=STAFF)
    assert (exc.value.status, exc.value.code) == (404, "CITIZEN_NOT_FOUND")
    assert _events("citizen.read") == []
    with pytest.raises(CitizenNotFound):
        actions.get_citizen(999999, actor=PARTNER, purpose="booking")
    (probe,) = _events("citizen.read")
    assert (probe.citizen_id, probe.outcome) == (999999, "not_found")


# -- search --------------------------------------------------------------------------------
def test_lookup_by_national_id_goes_through_the_blind_index(make_citizen):
    target = make_citizen(national_id="11010519491231002X")
    make_citizen()
    for typed in ("11010519491231002X", "11010519491231002x", " 110105 19491231 002x "):
        assert [c.id for c in actions.find_citizens(national_id=typed, actor=STAFF)] == [target.id]
    absent = make_national_id("110105", date(1949, 12, 31), 7, "F")
    assert actions.find_citizens(national_id=absent, actor=STAFF) == []


def test_lookup_by_a_mistyped_national_id_is_422_not_an_empty_list(make_citizen):
    with pytest.raises(NationalIdInvalid):
        actions.find_citizens(national_id="11010519491231002", actor=STAFF)


def test_lookup_by_phone_district_and_status(make_citizen):
    a = make_citizen(phone="13600000001", district="110101")
    b = make_citizen(phone="13600000001", district="110102")
    c = make_citizen(phone="13600000002", district="110101")
    actions.record_life_event(
        c.id, "moved_away", effective_date=date(2024, 1, 1), actor=STAFF, reason="迁出通知"
    )
    assert [x.id for x in actions.find_citizens(phone="136 0000 0001", actor=STAFF)] == [a.id, b.id]
    assert [x.id for x in actions.find_citizens(district="110101", actor=STAFF)] == [a.id, c.id]
    found = actions.find_citizens(district="110101", status="active", actor=STAFF)
    assert [x.id for x in found] == [a.id]
    assert [x.id for x in actions.find_citizens(status="moved_away", actor=STAFF)] == [c.id]


def test_search_pages_by_id(make_citizen):
    ids = [make_citizen(district="110116").id for _ in range(5)]
    page1 = actions.find_citizens(district="110116", limit=2, actor=STAFF)
    page3 = actions.find_citizens(district="110116", limit=2, offset=4, actor=STAFF)
    assert [c.id for c in page1] == ids[:2] and [c.id for c in page3] == ids[4:]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"limit": 0}, CitizenDataInvalid),
        ({"limit": 101}, CitizenDataInvalid),
        ({"offset": -1}, CitizenDataInvalid),
        ({"district": "999999"}, DistrictUnknown),
        ({"status": "asleep"}, CitizenDataInvalid),
        ({"phone": "555-1234"}, CitizenDataInvalid),
    ],
)
def test_search_refuses_bad_filters(app_ctx, kwargs, error):
    with pytest.raises(error):
        actions.find_citizens(actor=STAFF, **kwargs)


def test_partner_search_is_one_audit_event_listing_the_results(make_citizen):
    target = make_citizen()
    with pytest.raises(PurposeRequired):
        actions.find_citizens(national_id=target.national_id, actor=PARTNER)
    actions.find_citizens(national_id=target.national_id, actor=PARTNER, purpose="insurance check")
    refused, ok = _events("citizen.search")
    assert refused.outcome == "refused" and ok.outcome == "ok"
    assert (ok.citizen_id, ok.purpose, ok.actor_id) == (target.id, "insurance check", "hospital-1")
    assert json.loads(ok.details) == {
        "filters": ["national_id"],
        "result_ids": [target.id],
        "unmasked_fields": [],
    }
    # The filter's value (the ID) never reaches the audit trail.
    assert target.national_id not in ok.details + refused.details


def test_many_results_are_listed_without_a_single_citizen_id(make_citizen):
    ids = [make_citizen(district="110117").id for _ in range(3)]
    actions.find_citizens(district="110117", actor=STAFF, pii=True)
    (search,) = _events("citizen.search")
    assert search.citizen_id is None
    assert json.loads(search.details)["result_ids"] == ids


def test_staff_masked_search_is_not_audited(make_citizen):
    make_citizen()
    actions.find_citizens(actor=STAFF)
    assert _events("citizen.search") == []


# -- update --------------------------------------------------------------------------------
def test_update_keeps_the_phone_index_in_step(make_citizen):
    citizen = make_citizen(phone="13500000001")
    updated = actions.update_citizen(
        citizen.id, {"phone": "13500000002", "district": "110113"}, expected_version=1, actor=STAFF
    )
    assert (updated.phone, updated.district, updated.version_id) == ("13500000002", "110113", 2)
    assert updated.updated_at >= updated.created_at
    assert actions.find_citizens(phone="13500000001", actor=STAFF) == []
    assert [c.id for c in actions.find_citizens(phone="13500000002", actor=STAFF)] == [citizen.id]
    (audited,) = _events("citizen.update")
    assert json.loads(audited.details) == {"fields": ["district", "phone"]}
    assert "13500000002" not in audited.details and "110113" not in audited.details


def test_update_can_remove_the_phone(make_citizen):
    citizen = make_citizen()
    updated = actions.update_citizen(citizen.id, {"phone": None}, expected_version=1, actor=STAFF)
    assert updated.phone is None and updated.phone_index is None


def test_update_with_nothing_changed_writes_nothing(make_citizen):
    citizen = make_citizen(district="110101")
    same = actions.update_citizen(
        citizen.id, {"district": "110101"}, expected_version=1, actor=STAFF
    )
    assert same.version_id == 1 and _events("citizen.update") == []


def test_stale_version_is_409_and_loses_nothing(make_citizen):
    citizen = make_citizen(district="110101")
    # Two clerks read version 1; the first saves; the second must not overwrite blindly.
    actions.update_citizen(citizen.id, {"district": "110102"}, expected_version=1, actor=STAFF)
    with pytest.raises(CitizenVersionStale) as exc:
        actions.update_citizen(citizen.id, {"district": "110105"}, expected_version=1, actor=STAFF)
    assert (exc.value.status, exc.value.code) == (409, "STALE_VERSION")
    assert exc.value.extensions == {"current_version": 2}
    db.session.expire_all()
    assert db.session.get(Citizen, citizen.id).district == "110102"
    assert len(_events("citizen.update")) == 1


def test_a_write_between_read_and_flush_is_caught_by_the_version_counter(make_citizen):
    citizen = make_citizen(district="110101")
    assert citizen.version_id == 1  # loaded into the session at version 1
    # Someone else's UPDATE lands after our read (the session still holds version 1).
    db.session.execute(
        sa.text("UPDATE citizen SET version_id = version_id + 1 WHERE id = :id"), {"id": citizen.id}
    )
    with pytest.raises(CitizenVersionStale):
        actions.update_citizen(citizen.id, {"district": "110105"}, expected_version=1, actor=STAFF)
    assert _events("citizen.update") == []


def test_national_id_is_not_updatable(make_citizen):
    citizen = make_citizen()
    other = make_national_id("110101", date(1990, 1, 1), 9, "M")
    with pytest.raises(CitizenFieldNotUpdatable) as exc:
        actions.update_citizen(citizen.id, {"national_id": other}, expected_version=1, actor=STAFF)
    assert exc.value.status == 422 and exc.value.code == "FIELD_NOT_UPDATABLE"
    assert "national_id cannot be updated" in exc.value.detail
    assert exc.value.extensions == {"fields": ["national_id"]}
    with pytest.raises(CitizenFieldNotUpdatable) as exc2:
        actions.update_citizen(
            citizen.id,
            {"birth_date": "2000-01-01", "status": "deceased"},
            expected_version=1,
            actor=STAFF,
        )
    assert exc2.value.extensions == {"fields": ["birth_date", "status"]}
    db.session.expire_all()
    assert db.session.get(Citizen, citizen.id).version_id == 1


def test_update_validates_like_create(make_citizen):
    citizen = make_citizen()
    with pytest.raises(DistrictUnknown):
        actions.update_citizen(citizen.id, {"district": "000000"}, expected_version=1, actor=STAFF)
    with pytest.raises(CitizenDataInvalid):
        actions.update_citizen(citizen.id, {"name": None}, expected_version=1, actor=STAFF)
    with pytest.raises(CitizenNotFound):
        actions.update_citizen(999999, {"name": "x"}, expected_version=None, actor=STAFF)


# -- life events ---------------------------------------------------------------------------
def test_record_death(make_citizen):
    citizen = make_citizen()
    done = actions.record_life_event(
        citizen.id,
        "deceased",
        effective_date=date(2025, 5, 1),
        actor=STAFF,
        reason="死亡证明 2025-117",
    )
    assert (done.status, done.status_effective_date, done.version_id) == (
        "deceased",
        date(2025, 5, 1),
        2,
    )
    assert done.status_changed_at >= done.created_at
    (audited,) = _events("citizen.life_event")
    assert audited.citizen_id == citizen.id
    assert json.loads(audited.details) == {
        "event": "deceased",
        "effective_date": "2025-05-01",
        "reason": "死亡证明 2025-117",
    }


@pytest.mark.parametrize(
    ("first", "second"),
    [("deceased", "deceased"), ("deceased", "moved_away"), ("moved_away", "deceased")],
)
def test_only_an_active_citizen_has_a_life_event(make_citizen, first, second):
    citizen = make_citizen()
    actions.record_life_event(
        citizen.id, first, effective_date=date(2025, 1, 1), actor=STAFF, reason="r"
    )
    with pytest.raises(CitizenStateConflict) as exc:
        actions.record_life_event(
            citizen.id, second, effective_date=date(2025, 2, 1), actor=STAFF, reason="r"
        )
    assert (exc.value.status, exc.value.code) == (409, "CITIZEN_STATE_CONFLICT")
    assert exc.value.extensions == {"current_status": first}
    assert len(_events("citizen.life_event")) == 1


def test_a_closed_record_is_not_updated(make_citizen):
    citizen = make_citizen()
    actions.record_life_event(
        citizen.id, "moved_away", effective_date=date(2025, 1, 1), actor=STAFF, reason="r"
    )
    with pytest.raises(CitizenStateConflict) as exc:
        actions.update_citizen(
            citizen.id, {"phone": "13600000000"}, expected_version=2, actor=STAFF
        )
    assert exc.value.extensions == {"current_status": "moved_away"}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"event": "reborn"}, "event"),
        ({"event": "active"}, "event"),
        ({"reason": "  "}, "reason"),
        ({"reason": "r" * 201}, "reason"),
        ({"effective_date": china_today() + timedelta(days=1)}, "effective_date"),
        ({"effective_date": date(1989, 12, 31)}, "effective_date"),  # before birth (1990)
    ],
)
def test_life_event_refuses_bad_input(make_citizen, kwargs, field):
    citizen = make_citizen()
    args = {"event": "deceased", "effective_date": date(2025, 1, 1), "reason": "r"} | kwargs
    with pytest.raises(CitizenDataInvalid) as exc:
        actions.record_life_event(
            citizen.id,
            args["event"],
            effective_date=args["effective_date"],
            actor=STAFF,
            reason=args["reason"],
        )
    assert exc.value.extensions == {"field": field}
    db.session.expire_all()
    assert db.session.get(Citizen, citizen.id).status == "active"


def test_life_event_listener_runs_inside_the_transaction(make_citizen, listen_life_events):
    citizen = make_citizen()
    seen = []

    def cancel_cards(who: Citizen, what: str) -> None:
        # The status is already flushed: a query by another path sees it.
        status = db.session.scalar(
            sa.text("SELECT status FROM citizen WHERE id = :id"), {"id": who.id}
        )
        seen.append((who.id, what, status))
        # What a listener writes commits with the event.
        db.session.add(
            AuditEvent(
                occurred_at=who.status_changed_at,
                actor_type="system",
                actor_id="cards",
                action="card.cancel",
                outcome="ok",
                citizen_id=who.id,
                details="{}",
            )
        )

    listen_life_events(cancel_cards)
    listen_life_events(cancel_cards)  # registering twice calls it once
    actions.record_life_event(
        citizen.id, "deceased", effective_date=date(2025, 1, 1), actor=STAFF, reason="r"
    )
    assert seen == [(citizen.id, "deceased", "deceased")]
    db.session.rollback()  # nothing pending: everything above was committed
    assert [e.citizen_id for e in _events("card.cancel")] == [citizen.id]


def test_a_failing_listener_commits_nothing(make_citizen, listen_life_events):
    citizen = make_citizen()

    def cards_refuse(who: Citizen, what: str) -> None:
        db.session.add(
            AuditEvent(
                occurred_at=who.status_changed_at,
                actor_type="system",
                actor_id="cards",
                action="card.cancel",
                outcome="ok",
                citizen_id=who.id,
                details="{}",
            )
        )
        raise RuntimeError("card service says no")

    listen_life_events(cards_refuse)
    with pytest.raises(RuntimeError, match="card service says no"):
        actions.record_life_event(
            citizen.id, "deceased", effective_date=date(2025, 1, 1), actor=STAFF, reason="r"
        )
    db.session.expire_all()
    stored = db.session.get(Citizen, citizen.id)
    assert (stored.status, stored.version_id, stored.status_effective_date) == ("active", 1, None)
    assert _events("citizen.life_event") == [] and _events("card.cancel") == []


def test_removed_listener_is_not_called(make_citizen):
    citizen = make_citizen()
    calls = []

    def listener(who: Citizen, what: str) -> None:
        calls.append(what)

    actions.on_life_event(listener)
    actions.remove_life_event_listener(listener)
    actions.remove_life_event_listener(listener)  # unknown now: ignored
    actions.record_life_event(
        citizen.id, "moved_away", effective_date=date(2025, 1, 1), actor=STAFF, reason="r"
    )
    assert calls == []
