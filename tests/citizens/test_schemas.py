"""Input validation at the edge and masked versus full output."""

from __future__ import annotations

import marshmallow as ma
import pytest

from citizen_card.citizens import actions
from citizen_card.citizens.models import PII_FIELDS
from citizen_card.citizens.schemas import CitizenCreateSchema
from citizen_card.citizens.schemas import CitizenPiiSchema
from citizen_card.citizens.schemas import CitizenQueryArgsSchema
from citizen_card.citizens.schemas import CitizenSchema
from citizen_card.citizens.schemas import CitizenUpdateSchema
from citizen_card.citizens.schemas import LifeEventSchema
from citizen_card.citizens.schemas import PurposeArgsSchema
from citizen_card.citizens.schemas import citizen_schema
from citizen_card.extensions import db
from tests.citizens.conftest import PARTNER
from tests.citizens.conftest import citizen_data


def _errors(schema: ma.Schema, data: dict) -> dict:
    with pytest.raises(ma.ValidationError) as exc:
        schema.load(data)
    return exc.value.messages  # type: ignore[return-value]


def test_masked_schema_hides_personal_data(make_citizen):
    citizen = make_citizen(national_id="11010519491231002X", name="张三丰", phone="13812345678")
    out = CitizenSchema().dump(citizen)
    assert out["name"] == "张**"
    assert out["national_id"] == "110105********002X"
    assert out["phone"] == "138****5678"
    assert out["birth_year"] == 1949 and "birth_date" not in out
    assert out["sex"] == "F"
    assert out["district"] == "110108"
    assert out["district_name"] == {"zh": "海淀区", "en": "Haidian"}
    assert out["version"] == 1 and out["status"] == "active"
    assert out["status_effective_date"] is None
    text = repr(out)
    assert "三丰" not in text and "19491231" not in text and "12345678" not in text


def test_pii_schema_shows_it_in_full(make_citizen):
    citizen = make_citizen(national_id="11010519491231002X", name="张三丰", phone="13812345678")
    out = CitizenPiiSchema().dump(citizen)
    assert (out["name"], out["national_id"], out["phone"]) == (
        "张三丰",
        "11010519491231002X",
        "13812345678",
    )
    assert out["birth_date"] == "1949-12-31"
    masked = CitizenSchema().dump(citizen)
    # Same keys except the full birth date, and the differing values are exactly PII_FIELDS
    # (what the actions record as unmasked in the audit trail).
    assert set(out) - set(masked) == {"birth_date"} and set(masked) <= set(out)
    differs = {k for k in masked if masked[k] != out[k]} | (set(out) - set(masked))
    assert differs == set(PII_FIELDS)


def test_citizen_schema_picks_by_pii(make_citizen):
    citizen = make_citizen(name="张三丰")
    assert citizen_schema(False).dump(citizen)["name"] == "张**"
    assert citizen_schema(True).dump(citizen)["name"] == "张三丰"
    assert [c["name"] for c in citizen_schema(False, many=True).dump([citizen])] == ["张**"]


def test_timestamps_always_carry_utc(make_citizen):
    citizen = make_citizen()
    db.session.expire_all()  # SQLite hands them back naive; the output must not differ
    out = CitizenSchema().dump(citizen)
    for key in ("created_at", "updated_at", "status_changed_at"):
        assert out[key].endswith("+00:00"), out[key]


def test_no_phone_stays_null(make_citizen):
    citizen = make_citizen(phone=None)
    assert CitizenSchema().dump(citizen)["phone"] is None
    assert CitizenPiiSchema().dump(citizen)["phone"] is None


def test_create_schema_accepts_valid_data():
    data = citizen_data()
    assert CitizenCreateSchema().load(data) == data
    del data["phone"]
    assert "phone" not in CitizenCreateSchema().load(data)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"phone": "12812345678"}, "phone"),
        ({"phone": "1381234567"}, "phone"),
        ({"phone": "13812345678\n"}, "phone"),  # `$` would have let this through
        ({"phone": "138١٢٣٤٥٦٧٨"}, "phone"),  # `\d` would have let this through
        ({"residence_type": "tourist"}, "residence_type"),
        ({"insurance_scheme": "private"}, "insurance_scheme"),
        ({"employment_status": "idle"}, "employment_status"),
        ({"name": ""}, "name"),
        ({"district": "1101"}, "district"),
        ({"sex": "M"}, "sex"),  # unknown field: derived, never given
        ({"status": "deceased"}, "status"),  # unknown field: only a life event changes it
    ],
)
def test_create_schema_refuses(change, field):
    assert field in _errors(CitizenCreateSchema(), citizen_data(**change))


def test_create_schema_requires_the_identity():
    errors = _errors(CitizenCreateSchema(), {})
    assert set(errors) == {
        "national_id",
        "name",
        "district",
        "residence_type",
        "insurance_scheme",
        "employment_status",
    }


def test_update_schema_needs_a_version_and_a_change():
    assert CitizenUpdateSchema().load({"version": 3, "phone": None}) == {
        "version": 3,
        "phone": None,
    }
    assert "version" in _errors(CitizenUpdateSchema(), {"phone": "13812345678"})
    assert "_schema" in _errors(CitizenUpdateSchema(), {"version": 3})
    assert "version" in _errors(CitizenUpdateSchema(), {"version": "3", "name": "x"})  # strict
    assert "version" in _errors(CitizenUpdateSchema(), {"version": 0, "name": "x"})


def test_update_schema_explains_that_the_national_id_is_fixed():
    errors = _errors(CitizenUpdateSchema(), {"version": 1, "national_id": "11010519491231002X"})
    assert errors == {
        "national_id": ["A national ID cannot be changed: it identifies the citizen."]
    }


def test_query_args_defaults_and_bounds():
    assert CitizenQueryArgsSchema().load({}) == {"limit": 20, "offset": 0}
    loaded = CitizenQueryArgsSchema().load({"national_id": "11010519491231002x", "limit": "100"})
    assert loaded["limit"] == 100 and loaded["national_id"] == "11010519491231002x"
    assert "limit" in _errors(CitizenQueryArgsSchema(), {"limit": "101"})
    assert "limit" in _errors(CitizenQueryArgsSchema(), {"limit": "0"})
    assert "offset" in _errors(CitizenQueryArgsSchema(), {"offset": "-1"})
    assert "status" in _errors(CitizenQueryArgsSchema(), {"status": "asleep"})
    assert "purpose" in _errors(CitizenQueryArgsSchema(), {"purpose": "x" * 257})
    assert "admin" in _errors(CitizenQueryArgsSchema(), {"admin": "1"})  # unknown


def test_query_args_are_find_citizens_keywords(make_citizen):
    citizen = make_citizen(district="110119")
    args = CitizenQueryArgsSchema().load({"district": "110119", "purpose": "就业登记"})
    found = actions.find_citizens(**args, actor=PARTNER)
    assert [c.id for c in found] == [citizen.id]


def test_purpose_args():
    assert PurposeArgsSchema().load({"purpose": "门诊挂号"}) == {"purpose": "门诊挂号"}
    assert PurposeArgsSchema().load({}) == {}


def test_life_event_schema():
    loaded = LifeEventSchema().load(
        {"event": "moved_away", "effective_date": "2025-03-01", "reason": "迁出 2025-03"}
    )
    assert loaded["effective_date"].isoformat() == "2025-03-01"
    errors = _errors(LifeEventSchema(), {"event": "active", "effective_date": "soon"})
    assert set(errors) == {"event", "effective_date", "reason"}
