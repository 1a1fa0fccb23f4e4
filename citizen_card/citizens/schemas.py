"""Request and response shapes of the registry (marshmallow 4, explicit fields, no DB access).

Output comes in two explicit schemas, because marshmallow 4 has no ``context`` to switch on:

- ``CitizenSchema`` for every caller: name, national ID and phone masked, and the birth date
  reduced to ``birth_year`` (the masked national ID hides the date digits too, so the two agree).
- ``CitizenPiiSchema`` only for holders of the personal-data scope: the same fields, with
  ``name``, ``national_id``, ``phone`` and ``birth_date`` in full (models.PII_FIELDS).

``citizen_schema(pii)`` picks one; the view must pass the same ``pii`` to the action, whose
audit event records which fields left unmasked.

Input: closed enumerations are validated here (``OneOf``, shown as enums in OpenAPI). The
national ID's GB 11643 rules and the district are checked by the actions, which answer with
their own codes (INVALID_NATIONAL_ID with ``check``, UNKNOWN_DISTRICT).
"""

from __future__ import annotations

from datetime import UTC
from datetime import datetime
from typing import Any

import marshmallow as ma
from marshmallow import validate

from citizen_card.citizens.models import Citizen
from citizen_card.citizens.reference import DISTRICTS
from citizen_card.citizens.reference import EMPLOYMENT_STATUSES
from citizen_card.citizens.reference import INSURANCE_SCHEMES
from citizen_card.citizens.reference import LIFE_EVENTS
from citizen_card.citizens.reference import MOBILE_PHONE_PATTERN
from citizen_card.citizens.reference import NAME_MAX_LENGTH
from citizen_card.citizens.reference import REASON_MAX_LENGTH
from citizen_card.citizens.reference import RESIDENCE_TYPES
from citizen_card.citizens.reference import SEXES
from citizen_card.citizens.reference import STATUSES
from citizen_card.pii import mask_name
from citizen_card.pii import mask_national_id
from citizen_card.pii import mask_phone

_ID_HELP = (
    "18-character 居民身份证号码 (GB 11643); a final x is read as X and spaces are ignored."
    " Its rules are checked by the registry: INVALID_NATIONAL_ID names the failed check."
)
_DISTRICT_HELP = "District code (GB/T 2260), e.g. 110105 朝阳区; unknown codes: UNKNOWN_DISTRICT"
_PHONE_HELP = "Mainland mobile number, 11 digits"


def _name_field(**kwargs: Any) -> ma.fields.String:
    return ma.fields.String(validate=validate.Length(min=1, max=NAME_MAX_LENGTH), **kwargs)


def _phone_field(**kwargs: Any) -> ma.fields.String:
    return ma.fields.String(
        validate=validate.Regexp(MOBILE_PHONE_PATTERN, error="Not an 11-digit mobile number."),
        metadata={"description": _PHONE_HELP, "example": "13812345678"},
        **kwargs,
    )


def _district_field(**kwargs: Any) -> ma.fields.String:
    return ma.fields.String(
        validate=validate.Length(equal=6),
        metadata={"description": _DISTRICT_HELP, "example": "110105"},
        **kwargs,
    )


def _choice_field(choices: Any, **kwargs: Any) -> ma.fields.String:
    return ma.fields.String(validate=validate.OneOf(list(choices)), **kwargs)


class CitizenCreateSchema(ma.Schema):
    """A citizen to register. Birth date and sex are derived from the national ID."""

    national_id = ma.fields.String(
        required=True,
        validate=validate.Length(min=1, max=32),
        metadata={"description": _ID_HELP, "example": "11010519491231002X"},
    )
    name = _name_field(required=True, metadata={"example": "张三"})
    phone = _phone_field(allow_none=True)
    district = _district_field(required=True)
    residence_type = _choice_field(RESIDENCE_TYPES, required=True)
    insurance_scheme = _choice_field(INSURANCE_SCHEMES, required=True)
    employment_status = _choice_field(EMPLOYMENT_STATUSES, required=True)


class CitizenUpdateSchema(ma.Schema):
    """A change to a citizen's record: any of the updatable fields, and the version read.

    ``phone: null`` removes the phone. The national ID cannot be changed.
    """

    version = ma.fields.Integer(
        required=True,
        strict=True,
        validate=validate.Range(min=1),
        metadata={"description": "The version read; a newer record is STALE_VERSION (409)"},
    )
    name = _name_field()
    phone = _phone_field(allow_none=True)
    district = _district_field()
    residence_type = _choice_field(RESIDENCE_TYPES)
    insurance_scheme = _choice_field(INSURANCE_SCHEMES)
    employment_status = _choice_field(EMPLOYMENT_STATUSES)

    @ma.pre_load
    def _refuse_national_id(self, data: Any, **kwargs: Any) -> Any:
        # Without this the client would only read "Unknown field.", which explains nothing.
        if isinstance(data, dict) and "national_id" in data:
            raise ma.ValidationError(
                "A national ID cannot be changed: it identifies the citizen.",
                field_name="national_id",
            )
        return data

    @ma.validates_schema
    def _something_to_change(self, data: dict[str, Any], **kwargs: Any) -> None:
        if not set(data) - {"version"}:
            raise ma.ValidationError("Give at least one field to change.")


class PurposeArgsSchema(ma.Schema):
    """The query argument that states why a citizen's data is read (required of partners).

    A query argument rather than a header: HTTP header values cannot carry Chinese text.
    """

    purpose = ma.fields.String(
        validate=validate.Length(max=256),
        metadata={"description": "Why the data is read; recorded in the audit trail"},
    )


class CitizenQueryArgsSchema(PurposeArgsSchema):
    """Filters of the citizen search; national ID and phone match exactly.

    The keys are find_citizens' keyword arguments, so a view can pass them on as they are.
    """

    national_id = ma.fields.String(
        validate=validate.Length(min=1, max=32), metadata={"description": _ID_HELP}
    )
    phone = _phone_field()
    district = _district_field()
    status = _choice_field(STATUSES)
    limit = ma.fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    offset = ma.fields.Integer(load_default=0, validate=validate.Range(min=0))


class LifeEventSchema(ma.Schema):
    """A death or a move away from the city, to record on an active citizen."""

    event = _choice_field(LIFE_EVENTS, required=True)
    effective_date = ma.fields.Date(
        required=True, metadata={"description": "When it happened (not in the future)"}
    )
    reason = ma.fields.String(
        required=True,
        validate=validate.Length(min=1, max=REASON_MAX_LENGTH),
        metadata={
            "description": "The basis of the record, e.g. the notice's reference. Kept in the"
            " audit trail in plain text: no medical details."
        },
    )


class UtcDateTime(ma.fields.DateTime):
    """An ISO 8601 timestamp that always carries its UTC offset.

    SQLite returns stored UTC timestamps without a zone; PostgreSQL with one. Both leave as
    ``…+00:00``.
    """

    def _serialize(
        self, value: datetime | None, attr: str | None, obj: Any, **kwargs: Any
    ) -> str | float | None:
        if value is not None:
            value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return super()._serialize(value, attr, obj, **kwargs)


class _CitizenCommonSchema(ma.Schema):
    """The fields both output schemas share: nothing here identifies a person on its own."""

    id = ma.fields.Integer()
    birth_year = ma.fields.Method("_birth_year", metadata={"type": "integer"})
    sex = _choice_field(SEXES)
    district = ma.fields.String()
    district_name = ma.fields.Method(
        "_district_name", metadata={"description": "{zh, en}; null for a retired code"}
    )
    residence_type = _choice_field(RESIDENCE_TYPES)
    insurance_scheme = _choice_field(INSURANCE_SCHEMES)
    employment_status = _choice_field(EMPLOYMENT_STATUSES)
    status = _choice_field(STATUSES)
    status_changed_at = UtcDateTime()
    status_effective_date = ma.fields.Date(allow_none=True)
    version = ma.fields.Integer(
        attribute="version_id",
        metadata={"description": "Send it back with an update (optimistic locking)"},
    )
    created_at = UtcDateTime()
    updated_at = UtcDateTime()

    def _birth_year(self, citizen: Citizen) -> int:
        return citizen.birth_date.year

    def _district_name(self, citizen: Citizen) -> dict[str, str] | None:
        district = DISTRICTS.get(citizen.district)
        return {"zh": district.zh, "en": district.en} if district else None


class CitizenSchema(_CitizenCommonSchema):
    """A citizen as every authorised caller sees it: personal fields masked, birth year only."""

    name = ma.fields.Method("_name", metadata={"description": "Masked: 张**"})
    national_id = ma.fields.Method(
        "_national_id", metadata={"description": "Masked: 110105********002X"}
    )
    phone = ma.fields.Method(
        "_phone", allow_none=True, metadata={"description": "Masked: 138****5678"}
    )

    def _name(self, citizen: Citizen) -> str | None:
        return mask_name(citizen.name)

    def _national_id(self, citizen: Citizen) -> str | None:
        return mask_national_id(citizen.national_id)

    def _phone(self, citizen: Citizen) -> str | None:
        return mask_phone(citizen.phone)


class CitizenPiiSchema(_CitizenCommonSchema):
    """A citizen in full, for holders of the personal-data scope only (reads are audited)."""

    name = ma.fields.String()
    national_id = ma.fields.String()
    phone = ma.fields.String(allow_none=True)
    birth_date = ma.fields.Date()


def citizen_schema(pii: bool, *, many: bool = False) -> ma.Schema:
    """The output schema for a caller: full personal data only when ``pii`` is true."""
    return CitizenPiiSchema(many=many) if pii else CitizenSchema(many=many)
