"""Citizens registry rules: register, read, search, update, record a death or a move.

Every function is one unit of work: it validates, changes the session, records the audit event
in the same transaction and commits once at the end; on any failure it rolls back and raises a
DomainError subclass. Identity (``actor``), the caller's stated ``purpose`` and whether it may
see personal data in full (``pii``, the ``citizens:pii`` scope) are passed in by the view.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from contextlib import contextmanager
from datetime import UTC
from datetime import date
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from citizen_card.audit.actions import Actor
from citizen_card.audit.actions import record as record_audit
from citizen_card.citizens.models import NATIONAL_ID_CONTEXT
from citizen_card.citizens.models import PHONE_CONTEXT
from citizen_card.citizens.models import PII_FIELDS
from citizen_card.citizens.models import Citizen
from citizen_card.citizens.national_id import NationalId
from citizen_card.citizens.national_id import NationalIdError
from citizen_card.citizens.national_id import china_today
from citizen_card.citizens.national_id import parse_national_id
from citizen_card.citizens.reference import DISTRICTS
from citizen_card.citizens.reference import EMPLOYMENT_STATUSES
from citizen_card.citizens.reference import INSURANCE_SCHEMES
from citizen_card.citizens.reference import LIFE_EVENTS
from citizen_card.citizens.reference import MOBILE_PHONE
from citizen_card.citizens.reference import NAME_MAX_LENGTH
from citizen_card.citizens.reference import REASON_MAX_LENGTH
from citizen_card.citizens.reference import RESIDENCE_TYPES
from citizen_card.citizens.reference import STATUSES
from citizen_card.errors import Conflict
from citizen_card.errors import DomainError
from citizen_card.errors import NotFound
from citizen_card.extensions import db
from citizen_card.pii import blind_index

# Partners (OAuth clients) and terminals must say why they read a citizen's data (PIPL art. 6).
PARTNER_ACTOR_TYPES = ("client", "terminal")
PURPOSE_MAX_LENGTH = 256  # audit_event.purpose
MAX_PAGE_SIZE = 100

REQUIRED_FIELDS = frozenset(
    {"national_id", "name", "district", "residence_type", "insurance_scheme", "employment_status"}
)
CREATE_FIELDS = REQUIRED_FIELDS | {"phone"}
UPDATABLE_FIELDS = frozenset(
    {"name", "phone", "district", "residence_type", "insurance_scheme", "employment_status"}
)
_CHOICES: Mapping[str, Mapping[str, object]] = {
    "residence_type": RESIDENCE_TYPES,
    "insurance_scheme": INSURANCE_SCHEMES,
    "employment_status": EMPLOYMENT_STATUSES,
}


# -- errors --------------------------------------------------------------------------------
class CitizenNotFound(NotFound):
    """No citizen has this id."""

    code = "CITIZEN_NOT_FOUND"
    title = "Citizen not found"
    title_zh = "市民不存在"


class NationalIdDuplicate(Conflict):
    """The national ID is already registered; ``existing_citizen_id`` names the record."""

    code = "DUPLICATE_NATIONAL_ID"
    title = "National ID already registered"
    title_zh = "身份证号码已登记"


class NationalIdInvalid(DomainError):
    """The national ID fails a GB 11643 rule; ``check`` names which one."""

    status = 422
    code = "INVALID_NATIONAL_ID"
    title = "Invalid national ID"
    title_zh = "身份证号码无效"


class DistrictUnknown(DomainError):
    """The district code is not one of the city's districts."""

    status = 422
    code = "UNKNOWN_DISTRICT"
    title = "Unknown district"
    title_zh = "行政区代码无效"


class CitizenDataInvalid(DomainError):
    """A field's value breaks a registry rule; ``field`` names it."""

    status = 422
    code = "INVALID_CITIZEN_DATA"
    title = "Invalid citizen data"
    title_zh = "市民信息无效"


class CitizenFieldNotUpdatable(DomainError):
    """The change touches fields that cannot be updated; ``fields`` lists them."""

    status = 422
    code = "FIELD_NOT_UPDATABLE"
    title = "Field cannot be updated"
    title_zh = "该字段不可修改"


class CitizenStateConflict(Conflict):
    """The citizen's status does not allow the change; ``current_status`` says what it is."""

    code = "CITIZEN_STATE_CONFLICT"
    title = "Citizen status does not allow this"
    title_zh = "市民当前状态不允许此操作"


class CitizenVersionStale(Conflict):
    """The record changed since the caller read it (optimistic locking)."""

    code = "STALE_VERSION"
    title = "Record changed since it was read"
    title_zh = "记录已被他人修改，请重新读取"


class PurposeRequired(DomainError):
    """A partner or terminal read a citizen's data without stating a purpose."""

    status = 400
    code = "PURPOSE_REQUIRED"
    title = "Purpose of use required"
    title_zh = "须说明个人信息使用目的"


class PurposeInvalid(DomainError):
    """The stated purpose cannot be recorded as given (too long)."""

    status = 400
    code = "INVALID_PURPOSE"
    title = "Invalid purpose of use"
    title_zh = "使用目的无效"


# -- life-event listeners ------------------------------------------------------------------
LifeEventListener = Callable[[Citizen, str], None]
# Process-wide, filled at start-up by modules that must react (the card module cancels cards).
_life_event_listeners: list[LifeEventListener] = []


def on_life_event(callback: LifeEventListener) -> LifeEventListener:
    """Call ``callback(citizen, event)`` for every recorded life event.

    It runs inside record_life_event's transaction, after the status change is flushed and
    before the commit: what it writes commits with the event, and if it raises, nothing
    commits. Usable as a decorator; registering the same callback again has no effect.
    """
    if callback not in _life_event_listeners:
        _life_event_listeners.append(callback)
    return callback


def remove_life_event_listener(callback: LifeEventListener) -> None:
    """Stop calling a callback registered with on_life_event (unknown ones are ignored)."""
    if callback in _life_event_listeners:
        _life_event_listeners.remove(callback)


# -- actions -------------------------------------------------------------------------------
def create_citizen(data: Mapping[str, Any], *, actor: Actor) -> Citizen:
    """Register a citizen: validate the ID, derive birth date and sex, refuse a duplicate.

    The blind index is checked first, for a 409 naming the existing record; a registration
    racing this one past that check is stopped by the unique index and gets the same 409.
    """
    unknown = sorted(set(data) - CREATE_FIELDS)
    if unknown:
        raise CitizenDataInvalid(f"unknown fields: {', '.join(unknown)}", field=unknown[0])
    missing = sorted(REQUIRED_FIELDS - {k for k, v in data.items() if v is not None})
    if missing:
        raise CitizenDataInvalid(f"missing fields: {', '.join(missing)}", field=missing[0])
    parsed = _parse_national_id(data["national_id"])
    values = _clean_fields({k: v for k, v in data.items() if k != "national_id"})
    index = blind_index(parsed.number, NATIONAL_ID_CONTEXT)
    with _unit_of_work():
        _refuse_duplicate(index)
        now = datetime.now(UTC)
        citizen = Citizen(
            national_id=parsed.number,
            national_id_index=index,
            birth_date=parsed.birth_date,
            sex=parsed.sex,
            status="active",
            status_changed_at=now,
            created_at=now,
            updated_at=now,
            **values,
        )
        _set_phone_index(citizen)
        db.session.add(citizen)
        try:
            db.session.flush()
        except IntegrityError:
            # Someone registered the same person after our check and committed first. Roll
            # back and look again in a new transaction, which sees their row under any
            # isolation level; anything else (a CHECK) is re-raised as it is.
            db.session.rollback()
            _refuse_duplicate(index)
            raise
        record_audit(
            "citizen.create",
            actor=actor,
            citizen_id=citizen.id,
            details={"fields": sorted(k for k, v in data.items() if v is not None)},
        )
    return citizen


def get_citizen(
    citizen_id: int, *, actor: Actor, purpose: str | None = None, pii: bool = False
) -> Citizen:
    """One citizen by id; audited when ``pii`` or when a partner or terminal reads.

    ``pii=True`` means the caller holds the personal-data scope and the view will render
    CitizenPiiSchema; the audit event lists the fields that leave unmasked. Partners and
    terminals must state a purpose (PurposeRequired); a refusal is audited too.
    """
    purpose = _clean_purpose(purpose)
    audited = _require_purpose(
        "citizen.read", actor=actor, purpose=purpose, pii=pii, citizen_id=citizen_id
    )
    citizen = db.session.get(Citizen, citizen_id)
    if audited:
        record_audit(
            "citizen.read",
            actor=actor,
            citizen_id=citizen_id,
            purpose=purpose,
            outcome="ok" if citizen is not None else "not_found",
            details={"unmasked_fields": _unmasked(pii)},
        )
        db.session.commit()
    if citizen is None:
        raise CitizenNotFound(f"no citizen has id {citizen_id}")
    return citizen


def find_citizens(
    *,
    national_id: str | None = None,
    phone: str | None = None,
    district: str | None = None,
    status: str | None = None,
    limit: int = 20,
    offset: int = 0,
    actor: Actor,
    purpose: str | None = None,
    pii: bool = False,
) -> list[Citizen]:
    """Citizens matching every given filter, by id; national ID and phone match exactly.

    National ID and phone go through their blind indexes (the stored values are encrypted);
    the ID is validated first, so a mistyped one is a 422 rather than an empty result. Audited
    like get_citizen: one event per search with the filter names (never their values) and the
    ids found; ``citizen_id`` is set when exactly one citizen was found.
    """
    purpose = _clean_purpose(purpose)
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise CitizenDataInvalid(f"limit must be between 1 and {MAX_PAGE_SIZE}", field="limit")
    if offset < 0:
        raise CitizenDataInvalid("offset must not be negative", field="offset")
    query = select(Citizen).order_by(Citizen.id).limit(limit).offset(offset)
    if national_id is not None:
        number = _parse_national_id(national_id).number
        query = query.where(Citizen.national_id_index == blind_index(number, NATIONAL_ID_CONTEXT))
    if phone is not None:
        query = query.where(Citizen.phone_index == blind_index(_phone(phone), PHONE_CONTEXT))
    if district is not None:
        query = query.where(Citizen.district == _district(district))
    if status is not None:
        query = query.where(Citizen.status == _choice("status", status, STATUSES))
    filters = [
        name
        for name, value in (
            ("national_id", national_id),
            ("phone", phone),
            ("district", district),
            ("status", status),
        )
        if value is not None
    ]
    audited = _require_purpose(
        "citizen.search", actor=actor, purpose=purpose, pii=pii, filters=filters
    )
    found = list(db.session.scalars(query))
    if audited:
        ids = [c.id for c in found]
        record_audit(
            "citizen.search",
            actor=actor,
            citizen_id=ids[0] if len(ids) == 1 else None,
            purpose=purpose,
            details={"filters": filters, "result_ids": ids, "unmasked_fields": _unmasked(pii)},
        )
        db.session.commit()
    return found


def update_citizen(
    citizen_id: int,
    changes: Mapping[str, Any],
    *,
    expected_version: int | None,
    actor: Actor,
) -> Citizen:
    """Change contact, district, residence, insurance or employment data, or the name.

    ``changes`` holds only fields to change (pop ``version`` from CitizenUpdateSchema's output
    and pass it as ``expected_version``); ``phone: None`` removes the phone.
    ``expected_version`` is the ``version`` the caller read: if the record has changed since,
    STALE_VERSION (409) instead of overwriting someone else's change. The national ID cannot be
    changed. Only an active citizen's record changes. The audit event lists the changed field
    names, never their values.
    """
    if "national_id" in changes:
        raise CitizenFieldNotUpdatable(
            "national_id cannot be updated: it identifies the citizen and keys their cards and"
            " service records. A record registered under a wrong number is a registration error"
            " for an administrator to resolve, not an update.",
            fields=["national_id"],
        )
    refused = sorted(set(changes) - UPDATABLE_FIELDS)
    if refused:
        raise CitizenFieldNotUpdatable(
            f"these fields cannot be updated: {', '.join(refused)}", fields=refused
        )
    if "name" in changes and changes["name"] is None:
        raise CitizenDataInvalid("name cannot be removed", field="name")
    values = _clean_fields(changes)
    with _unit_of_work():
        citizen = _load(citizen_id)
        if expected_version is not None and citizen.version_id != expected_version:
            raise CitizenVersionStale(
                f"citizen {citizen_id} is at version {citizen.version_id}, not"
                f" {expected_version}: read it again and reapply the change",
                current_version=citizen.version_id,
            )
        _require_active(citizen, "updated")
        changed = sorted(k for k, v in values.items() if getattr(citizen, k) != v)
        if not changed:
            return citizen  # nothing to write: no version bump, no audit event
        for name in changed:
            setattr(citizen, name, values[name])
        if "phone" in changed:
            _set_phone_index(citizen)
        citizen.updated_at = datetime.now(UTC)
        record_audit(
            "citizen.update", actor=actor, citizen_id=citizen.id, details={"fields": changed}
        )
        _flush(citizen_id)
    return citizen


def record_life_event(
    citizen_id: int,
    event: str,
    *,
    effective_date: date,
    actor: Actor,
    reason: str,
) -> Citizen:
    """Record that an active citizen died (``deceased``) or left the city (``moved_away``).

    ``reason`` is the basis of the record (e.g. the notice's reference); it goes into the
    plaintext, append-only audit trail, so it must not carry medical details. Listeners
    registered with on_life_event run before the commit, in the same transaction.
    """
    _choice("event", event, LIFE_EVENTS)
    reason = _text("reason", reason, REASON_MAX_LENGTH)
    if effective_date > china_today():
        raise CitizenDataInvalid("effective_date is in the future", field="effective_date")
    with _unit_of_work():
        citizen = _load(citizen_id)
        _require_active(citizen, f"recorded as {event}")
        if effective_date < citizen.birth_date:
            raise CitizenDataInvalid(
                "effective_date is before the citizen's birth date", field="effective_date"
            )
        now = datetime.now(UTC)
        citizen.status = event
        citizen.status_changed_at = now
        citizen.status_effective_date = effective_date
        citizen.updated_at = now
        record_audit(
            "citizen.life_event",
            actor=actor,
            citizen_id=citizen.id,
            details={
                "event": event,
                "effective_date": effective_date.isoformat(),
                "reason": reason,
            },
        )
        # Flushed first, so listeners' queries see the new status and a lost race stops here.
        _flush(citizen_id)
        for listener in tuple(_life_event_listeners):
            listener(citizen, event)
    return citizen


# -- helpers -------------------------------------------------------------------------------
@contextmanager
def _unit_of_work() -> Iterator[None]:
    """Commit once at the end; on any exception roll everything back and re-raise."""
    try:
        yield
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise


def _load(citizen_id: int) -> Citizen:
    citizen = db.session.get(Citizen, citizen_id)
    if citizen is None:
        raise CitizenNotFound(f"no citizen has id {citizen_id}")
    return citizen


def _flush(citizen_id: int) -> None:
    """Flush; a concurrent write caught by the version counter becomes STALE_VERSION."""
    try:
        db.session.flush()
    except StaleDataError:
        db.session.rollback()
        current = db.session.scalar(select(Citizen.version_id).where(Citizen.id == citizen_id))
        raise CitizenVersionStale(
            f"citizen {citizen_id} was changed by someone else meanwhile: read it again",
            current_version=current,
        ) from None


def _refuse_duplicate(index: str) -> None:
    existing = db.session.scalar(select(Citizen.id).where(Citizen.national_id_index == index))
    if existing is not None:
        raise NationalIdDuplicate(
            f"this national ID is already registered as citizen {existing}",
            existing_citizen_id=existing,
        )


def _require_active(citizen: Citizen, what: str) -> None:
    if citizen.status != "active":
        raise CitizenStateConflict(
            f"citizen {citizen.id} is {citizen.status}; only an active citizen can be {what}",
            current_status=citizen.status,
        )


def _require_purpose(
    action: str,
    *,
    actor: Actor,
    purpose: str | None,
    pii: bool,
    citizen_id: int | None = None,
    filters: list[str] | None = None,
) -> bool:
    """Whether this read is audited; a partner without a purpose is refused (and audited)."""
    partner = actor.type in PARTNER_ACTOR_TYPES
    if partner and purpose is None:
        details: dict[str, Any] = {"refused": "purpose_required", "unmasked_fields": _unmasked(pii)}
        if filters is not None:
            details["filters"] = filters
        # Committed on its own: the refusal is the whole unit of work, and probing without a
        # purpose is exactly what a data-protection officer wants to see.
        record_audit(action, actor=actor, citizen_id=citizen_id, outcome="refused", details=details)
        db.session.commit()
        raise PurposeRequired(
            "partners and terminals must state the purpose of reading a citizen's personal"
            " data (个人信息使用目的)"
        )
    return partner or pii


def _unmasked(pii: bool) -> list[str]:
    return list(PII_FIELDS) if pii else []


def _clean_purpose(purpose: str | None) -> str | None:
    if purpose is None or not purpose.strip():
        return None
    purpose = purpose.strip()
    if len(purpose) > PURPOSE_MAX_LENGTH:
        raise PurposeInvalid(f"purpose must be at most {PURPOSE_MAX_LENGTH} characters")
    return purpose


def _parse_national_id(value: object) -> NationalId:
    if not isinstance(value, str):
        raise NationalIdInvalid("the national ID must be a string", check="format")
    try:
        return parse_national_id(value)
    except NationalIdError as exc:
        raise NationalIdInvalid(str(exc), check=exc.check) from None


def _clean_fields(values: Mapping[str, Any]) -> dict[str, Any]:
    """Validate and normalise the non-identity fields present in values."""
    cleaned: dict[str, Any] = {}
    for name, value in values.items():
        if name == "name":
            cleaned[name] = _text("name", value, NAME_MAX_LENGTH)
        elif name == "phone":
            cleaned[name] = None if value is None else _phone(value)
        elif name == "district":
            cleaned[name] = _district(value)
        elif name in _CHOICES:
            cleaned[name] = _choice(name, value, _CHOICES[name])
        else:  # the callers filter unknown names first; this guards future callers
            raise CitizenDataInvalid(f"unknown field {name}", field=name)
    return cleaned


def _text(field: str, value: object, max_length: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise CitizenDataInvalid(f"{field} must be a non-empty string", field=field)
    text = value.strip()
    if len(text) > max_length:
        raise CitizenDataInvalid(f"{field} must be at most {max_length} characters", field=field)
    return text


def _phone(value: object) -> str:
    # The blind index and the stored value must agree, so spaces are dropped before both.
    phone = "".join(value.split()) if isinstance(value, str) else ""
    if not MOBILE_PHONE.match(phone):
        raise CitizenDataInvalid("phone must be an 11-digit mobile number", field="phone")
    return phone


def _district(value: object) -> str:
    if not isinstance(value, str) or value not in DISTRICTS:
        raise DistrictUnknown(
            "district must be one of the city's district codes, such as 110105 (朝阳区)",
            district=value if isinstance(value, str) else None,
        )
    return value


def _choice(field: str, value: object, choices: Mapping[str, object]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise CitizenDataInvalid(f"{field} must be one of: {', '.join(choices)}", field=field)
    return value


def _set_phone_index(citizen: Citizen) -> None:
    citizen.phone_index = (
        blind_index(citizen.phone, PHONE_CONTEXT) if citizen.phone is not None else None
    )
