"""Card rules: issuing at a station, the lifecycle, the deny list, and verifying every tap.

Every decision, accepted or refused, is written to the audit trail. A refusal is committed
before it is raised, so the record survives the caller's rollback: call the verifying
functions first in a unit of work.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import timedelta
from functools import lru_cache
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import current_app
from sqlalchemy import Boolean
from sqlalchemy import DateTime
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from card_reader.errors import CardResponseError
from card_reader.errors import SignatureError
from card_reader.protocol import SignedTransaction
from card_reader.protocol import make_card_number
from card_reader.protocol import public_key_from_point
from card_reader.protocol import verify_auth_signature
from citizen_card.audit.actions import Actor
from citizen_card.audit.actions import audit_row
from citizen_card.audit.actions import audit_step
from citizen_card.audit.actions import record as audit
from citizen_card.bulk import Step
from citizen_card.bulk import sql
from citizen_card.cards import pki
from citizen_card.cards.models import HELD_STATES
from citizen_card.cards.models import Card
from citizen_card.cards.models import CardChallenge
from citizen_card.cards.models import CardTransaction
from citizen_card.cards.models import DenyListChange
from citizen_card.cards.models import DenyListHead
from citizen_card.cards.models import IssuanceRequest
from citizen_card.citizens.actions import on_life_event
from citizen_card.citizens.models import Citizen
from citizen_card.errors import Conflict
from citizen_card.errors import DomainError
from citizen_card.errors import NotFound
from citizen_card.extensions import db
from citizen_card.pii import mask_name


# -- errors ---------------------------------------------------------------------------------
class CardNotFound(NotFound):
    """No such card (or issuance request)."""

    code = "CARD_NOT_FOUND"
    title = "Card not found"
    title_zh = "卡片不存在"


class CardStateConflict(Conflict):
    """The card or request is not in a state that allows this."""

    code = "CARD_STATE_CONFLICT"
    title = "Not allowed in the current state"
    title_zh = "当前状态不允许此操作"


class IssuanceRefused(Conflict):
    """The citizen cannot be issued a card now."""

    code = "ISSUANCE_REFUSED"
    title = "Card cannot be issued"
    title_zh = "无法办卡"


class InvalidCardData(DomainError):
    """Data sent by a terminal is malformed (bad public key, bad signature encoding)."""

    status = 422
    code = "INVALID_CARD_DATA"
    title = "Invalid card data"
    title_zh = "卡片数据无效"


REASONS = {
    "UNKNOWN_CARD": ("Unknown card", "未知卡片"),
    "BAD_SIGNATURE": ("The card's signature does not verify", "卡片签名无效"),
    "TERMINAL_MISMATCH": ("Signed for another terminal", "交易终端不符"),
    "CARD_SUSPENDED": ("Card reported lost or suspended", "卡片已挂失"),
    "CARD_CANCELLED": ("Card replaced or cancelled", "卡片已注销或已补换"),
    "CARD_EXPIRED": ("Card expired", "卡片已过期"),
    "PIN_REQUIRED": ("PIN verification required", "需要验证密码"),
    "CLOCK_SKEW": ("Terminal clock too far from ours", "终端时间偏差过大"),
    "REPLAYED": ("This transaction was already used", "交易已被使用（重放）"),
    "CHALLENGE_INVALID": ("Unknown, expired or used challenge", "挑战码无效或已过期"),
    "CITIZEN_INACTIVE": ("The card holder's record is closed", "持卡人档案已关闭"),
}


class CardRefused(DomainError):
    """A card authentication was refused; ``reason`` is the code a terminal shows."""

    status = 403
    code = "CARD_REFUSED"
    title = "Card refused"
    title_zh = "卡片被拒绝"

    def __init__(self, reason: str, detail: str | None = None) -> None:
        en, zh = REASONS[reason]
        super().__init__(detail or en, reason=reason, reason_zh=zh)
        self.reason = reason


# -- helpers --------------------------------------------------------------------------------
def _now() -> datetime:
    return datetime.now(UTC)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def get_card(card_number: str) -> Card:
    """A card by number."""
    card = db.session.scalars(select(Card).where(Card.card_number == card_number)).first()
    if card is None:
        raise CardNotFound(f"no card {card_number}")
    return card


def _set_status(card: Card, status: str, reason: str | None) -> None:
    card.status = status
    card.status_reason = reason
    card.status_changed_at = _now()


def _deny_list_change(card_number: str, change: str, reason: str) -> int:
    """Append a deny-list change under the head row's lock; returns its version."""
    head = db.session.execute(
        update(DenyListHead)
        .where(DenyListHead.id == 1)
        .values(version=DenyListHead.version + 1)
        .returning(DenyListHead.version)
    ).scalar_one_or_none()
    if head is None:  # first change ever
        db.session.add(DenyListHead(id=1, version=1))
        db.session.flush()
        head = 1
    db.session.add(
        DenyListChange(
            version=head, card_number=card_number, change=change, reason=reason, changed_at=_now()
        )
    )
    return int(head)


@contextmanager
def _refusals_recorded(action: str, actor: Actor, subject: str) -> Iterator[None]:
    """Audit a CardRefused with its reason and commit that record before re-raising."""
    try:
        yield
    except CardRefused as refused:
        db.session.rollback()
        audit(
            action,
            actor=actor,
            subject=subject,
            outcome="refused",
            details={"reason": refused.reason},
        )
        db.session.commit()
        raise


# -- issuance -------------------------------------------------------------------------------
def request_issuance(
    citizen_id: int, *, actor: Actor, station: str | None, replacement: bool = False
) -> IssuanceRequest:
    """Step 1 at a station: open an issuance request for a citizen."""
    citizen = db.session.get(Citizen, citizen_id)
    if citizen is None:
        raise IssuanceRefused("unknown citizen", citizen_id=citizen_id)
    if citizen.status != "active":
        raise IssuanceRefused(
            f"the citizen's record is {citizen.status}", citizen_status=citizen.status
        )
    held = db.session.scalars(
        select(Card).where(Card.citizen_id == citizen_id, Card.status.in_(HELD_STATES))
    ).first()
    if held is not None and not replacement:
        raise IssuanceRefused(
            "the citizen already holds a card; ask for a replacement",
            card_number=held.card_number,
            card_status=held.status,
        )
    if replacement and held is None:
        raise IssuanceRefused("there is no card to replace")
    now = _now()
    req = IssuanceRequest(
        citizen_id=citizen_id,
        state="new",
        replaces_card_id=held.id if held else None,
        requested_by=actor.id,
        station=station,
        created_at=now,
        updated_at=now,
    )
    db.session.add(req)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise IssuanceRefused("an issuance for this citizen is already in progress") from None
    audit(
        "card.issuance.request",
        actor=actor,
        citizen_id=citizen_id,
        subject=f"issuance:{req.id}",
        details={"replacement": replacement},
    )
    db.session.commit()
    return req


def _request(request_id: int, *states: str) -> IssuanceRequest:
    req = db.session.get(IssuanceRequest, request_id, with_for_update=True)
    if req is None:
        raise CardNotFound(f"no issuance request {request_id}")
    if req.state not in states:
        raise CardStateConflict(f"the request is {req.state}", current_state=req.state)
    return req


@dataclass(frozen=True)
class Personalization:
    """What the station terminal writes to the card after the backend certified its key."""

    request_id: int
    card_number: str
    holder_name: str
    citizen_ref: str
    valid_from: date
    valid_until: date
    card_certificate: bytes
    issuer_certificate: bytes


def personalize(request_id: int, public_point: bytes, *, actor: Actor) -> Personalization:
    """Steps 2-3: the card made its key pair; assign a number and certify the key."""
    req = _request(request_id, "new")
    try:
        public_key = public_key_from_point(public_point)
    except CardResponseError as exc:
        raise InvalidCardData(str(exc)) from exc
    citizen = db.session.get(Citizen, req.citizen_id)
    assert citizen is not None  # the foreign key guarantees it
    today = _now().date()
    valid_until = _add_years(today, int(current_app.config["CARD_VALIDITY_YEARS"]))
    prefix = str(current_app.config["CARD_NUMBER_PREFIX"])
    number = _free_card_number(prefix)
    holder = mask_name(citizen.name) or ""
    cert = pki.issue_card_certificate(
        public_key, card_number=number, holder=holder, valid_from=today, valid_until=valid_until
    )
    req.card_number = number
    req.public_key = public_point
    req.certificate = cert.public_bytes(serialization.Encoding.DER)
    req.state = "personalized"
    req.updated_at = _now()
    audit(
        "card.issuance.personalize",
        actor=actor,
        citizen_id=citizen.id,
        subject=f"card:{number}",
        details={"request": req.id},
    )
    db.session.commit()
    return Personalization(
        request_id=req.id,
        card_number=number,
        holder_name=citizen.name,
        citizen_ref=f"CC{citizen.id:010d}",
        valid_from=today,
        valid_until=valid_until,
        card_certificate=req.certificate,
        issuer_certificate=pki.issuer().certificate.public_bytes(serialization.Encoding.DER),
    )


def _add_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


def _free_card_number(prefix: str) -> str:
    """A random Luhn-valid number used by no card and no pending issuance."""
    for _ in range(10):
        digits = "".join(secrets.choice("0123456789") for _ in range(18 - len(prefix)))
        number = make_card_number(prefix + digits)
        taken = db.session.scalar(
            select(Card.id).where(Card.card_number == number)
        ) or db.session.scalar(
            select(IssuanceRequest.id).where(IssuanceRequest.card_number == number)
        )
        if not taken:
            return number
    raise CardStateConflict("could not allocate a card number; try again")  # 10 collisions


def complete_issuance(request_id: int, *, actor: Actor) -> Card:
    """Step 4: the terminal wrote the card and locked it; the card is issued.

    For a replacement, the old card becomes ``replaced`` for ever, in the same transaction.
    """
    req = _request(request_id, "personalized")
    assert req.card_number and req.public_key and req.certificate
    cert = x509.load_der_x509_certificate(req.certificate)
    now = _now()
    card = Card(
        card_number=req.card_number,
        citizen_id=req.citizen_id,
        status="issued",
        public_key=req.public_key,
        certificate=req.certificate,
        certificate_serial=format(cert.serial_number, "x"),
        issued_at=now,
        expires_at=cert.not_valid_after_utc,
        status_changed_at=now,
        replaces_card_id=req.replaces_card_id,
    )
    if req.replaces_card_id is not None:
        old = db.session.get(Card, req.replaces_card_id, with_for_update=True)
        assert old is not None
        if old.status in HELD_STATES:
            _set_status(old, "replaced", f"replaced by {card.card_number}")
            db.session.flush()  # release the one-held-card slot before taking it
            _deny_list_change(old.card_number, "add", "replaced")
            audit(
                "card.replaced",
                actor=actor,
                citizen_id=old.citizen_id,
                subject=f"card:{old.card_number}",
                details={"by": card.card_number},
            )
    db.session.add(card)
    req.state = "issued"
    req.updated_at = now
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise CardStateConflict("the citizen already holds another card") from None
    audit(
        "card.issue",
        actor=actor,
        citizen_id=card.citizen_id,
        subject=f"card:{card.card_number}",
        details={"request": req.id},
    )
    db.session.commit()
    return card


def fail_issuance(
    request_id: int, *, actor: Actor, reason: str, cancel: bool = False
) -> IssuanceRequest:
    """The terminal could not finish (or the station gave up): close the request."""
    req = _request(request_id, "new", "personalized")
    req.state = "cancelled" if cancel else "failed"
    req.failure_reason = reason
    req.updated_at = _now()
    audit(
        f"card.issuance.{req.state}",
        actor=actor,
        citizen_id=req.citizen_id,
        subject=f"issuance:{req.id}",
        purpose=reason,
    )
    db.session.commit()
    return req


# -- lifecycle ------------------------------------------------------------------------------
def report_lost(
    card_number: str, *, actor: Actor, citizen_id: int | None = None, reason: str = "reported lost"
) -> Card:
    """挂失: suspend a card at once (next request refused) and add it to the deny list.

    ``citizen_id`` given (a resident's own token) restricts this to the resident's own card.
    """
    card = db.session.scalars(
        select(Card).where(Card.card_number == card_number).with_for_update()
    ).first()
    if card is None or (citizen_id is not None and card.citizen_id != citizen_id):
        raise CardNotFound(f"no card {card_number}")
    if card.status not in ("issued", "active"):
        raise CardStateConflict(f"the card is {card.status}", current_status=card.status)
    _set_status(card, "suspended", reason)
    version = _deny_list_change(card_number, "add", "lost")
    audit(
        "card.report_lost",
        actor=actor,
        citizen_id=card.citizen_id,
        subject=f"card:{card_number}",
        purpose=reason,
        details={"deny_list_version": version},
    )
    db.session.commit()
    return card


def unsuspend(tx: SignedTransaction, *, actor: Actor, terminal: str) -> Card:
    """At a station, with the card present and its PIN verified: lift a suspension."""
    with _refusals_recorded("card.unsuspend", actor, f"card:{tx.card_number}"):
        card = _check(tx, terminal=terminal, online=True, require_pin=True, allowed=("suspended",))
        _spend(card, tx, actor, online=True)  # a captured proof cannot be used twice
        _set_status(card, "active", None)
        version = _deny_list_change(card.card_number, "remove", "found")
        audit(
            "card.unsuspend",
            actor=actor,
            citizen_id=card.citizen_id,
            subject=f"card:{card.card_number}",
            details={"deny_list_version": version},
        )
        db.session.commit()
        return card


def cancel_cards_of(citizen: Citizen, event: str) -> None:
    """Life-event listener: a citizen died or left; their cards are cancelled (same txn)."""
    for card in db.session.scalars(
        select(Card).where(Card.citizen_id == citizen.id, Card.status.in_(HELD_STATES))
    ):
        _set_status(card, "cancelled", event)
        _deny_list_change(card.card_number, "add", event)
        audit(
            "card.cancel",
            actor=Actor.system("life-event"),
            citizen_id=citizen.id,
            subject=f"card:{card.card_number}",
            purpose=event,
        )
    for req in db.session.scalars(
        select(IssuanceRequest).where(
            IssuanceRequest.citizen_id == citizen.id,
            IssuanceRequest.state.in_(("new", "personalized")),
        )
    ):
        req.state = "cancelled"
        req.failure_reason = event


def deny_list_since(version: int) -> tuple[int, list[DenyListChange]]:
    """The deny list's current version and the changes after ``version``."""
    head = db.session.scalar(select(DenyListHead.version).where(DenyListHead.id == 1)) or 0
    changes = list(
        db.session.scalars(
            select(DenyListChange)
            .where(DenyListChange.version > version, DenyListChange.version <= head)
            .order_by(DenyListChange.version)
        )
    )
    return head, changes


# -- authentication -------------------------------------------------------------------------
@dataclass(frozen=True)
class VerifiedTransaction:
    """A card transaction the core accepted: whose card, which card, what was signed."""

    citizen_id: int
    card_id: int
    card_number: str
    transaction: SignedTransaction
    transaction_record_id: int


@dataclass(frozen=True)
class CardRecord:
    """What verifying a transaction needs to know about a card and its holder."""

    id: int
    card_number: str
    citizen_id: int
    status: str
    public_key: bytes
    expires_at: datetime
    citizen_status: str


_CARD_RECORDS = sql(
    "SELECT c.card_number, c.id, c.citizen_id, c.status, c.public_key, c.expires_at,"
    " z.status AS citizen_status FROM card c JOIN citizen z ON z.id = c.citizen_id"
    " WHERE c.card_number IN :numbers",
    lists=["numbers"],
    columns={"expires_at": DateTime(timezone=True)},
)


# For hot paths that key their own rows by citizen: the holders of the cards in :numbers.
CARD_HOLDERS_SQL = "SELECT citizen_id FROM card WHERE card_number IN :numbers"


def card_records_step(numbers: list[str]) -> Step:
    """A bulk step reading these cards (see :func:`card_records`)."""
    return Step(_CARD_RECORDS, {"numbers": sorted(set(numbers))})


def card_records(step: Step) -> dict[str, CardRecord]:
    """The cards a :func:`card_records_step` found, by number (one query for many)."""
    return {
        row[0]: CardRecord(row[1], row[0], row[2], row[3], bytes(row[4]), _utc(row[5]), row[6])
        for row in step.rows
    }


@lru_cache(maxsize=65536)
def _public_key(point: bytes) -> ec.EllipticCurvePublicKey:
    # Decoding the point is a third of a verification; a gate sees the same cards all day.
    return public_key_from_point(point)


def check_card(
    tx: SignedTransaction,
    card: CardRecord | None,
    *,
    terminal: str,
    online: bool,
    require_pin: bool = False,
    allowed: tuple[str, ...] = ("issued", "active"),
) -> None:
    """Every check of a card transaction but the spent counter; raises CardRefused.

    Pure: the caller read the card (``card_records``) and records the outcome.
    """
    if card is None:
        raise CardRefused("UNKNOWN_CARD")
    try:
        tx.verify(_public_key(card.public_key))
    except SignatureError:
        raise CardRefused("BAD_SIGNATURE") from None
    if tx.terminal_id != terminal:
        raise CardRefused(
            "TERMINAL_MISMATCH",
            f"signed for terminal {tx.terminal_id!r}, presented by {terminal!r}",
        )
    if card.status not in allowed:
        if card.status == "suspended":
            raise CardRefused("CARD_SUSPENDED")
        if card.status == "expired":
            raise CardRefused("CARD_EXPIRED")
        raise CardRefused("CARD_CANCELLED")
    now = _now()
    if card.expires_at < now:
        raise CardRefused("CARD_EXPIRED")
    # Offline uploads are verified later, without the clock check.
    skew = int(current_app.config["CARD_TX_MAX_SKEW_SECONDS"])
    if online and abs(tx.timestamp - now.timestamp()) > skew:
        raise CardRefused(
            "CLOCK_SKEW", f"terminal time is {int(tx.timestamp - now.timestamp())} s off"
        )
    if (require_pin or card.status == "issued") and not tx.pin_verified:
        raise CardRefused("PIN_REQUIRED")
    if card.citizen_status != "active":
        raise CardRefused("CITIZEN_INACTIVE")


def _check(
    tx: SignedTransaction,
    *,
    terminal: str,
    online: bool,
    require_pin: bool,
    allowed: tuple[str, ...] = ("issued", "active"),
) -> Card:
    card = db.session.scalars(select(Card).where(Card.card_number == tx.card_number)).first()
    record = None
    if card is not None:
        citizen_status = db.session.scalar(
            select(Citizen.status).where(Citizen.id == card.citizen_id)
        )
        record = CardRecord(
            card.id,
            card.card_number,
            card.citizen_id,
            card.status,
            card.public_key,
            _utc(card.expires_at),
            citizen_status or "",
        )
    check_card(
        tx, record, terminal=terminal, online=online, require_pin=require_pin, allowed=allowed
    )
    assert card is not None
    return card


_SPEND = sql(
    "INSERT INTO card_transaction (card_id, atc, client_id, terminal_id, amount_fen, signed_at,"
    " pin_verified, online, received_at) VALUES (:card_id, :atc, :client_id, :terminal_id,"
    " :amount_fen, :signed_at, :pin_verified, :online, :received_at)",
    types={
        "pin_verified": Boolean(),
        "online": Boolean(),
        "received_at": DateTime(timezone=True),
    },
)


def _spent_row(
    card_id: int, tx: SignedTransaction, actor: Actor, *, online: bool, at: datetime
) -> dict[str, Any]:
    # One shape for a spent counter, whichever path records it.
    return {
        "card_id": card_id,
        "atc": tx.atc,
        "client_id": actor.id,
        "terminal_id": tx.terminal_id,
        "amount_fen": tx.amount_fen,
        "signed_at": tx.timestamp,
        "pin_verified": tx.pin_verified,
        "online": online,
        "received_at": at,
    }


def _audit_details(tx: SignedTransaction, *, online: bool) -> dict[str, Any]:
    # What the audit trail keeps of an accepted transaction, whichever path accepted it.
    return {"atc": tx.atc, "amount_fen": tx.amount_fen, "pin": tx.pin_verified, "online": online}


def spend_steps(
    spent: list[tuple[CardRecord, SignedTransaction]],
    *,
    actor: Actor,
    online: bool,
    purpose: str | list[str],
) -> list[Step]:
    """Bulk steps that spend these (card, ATC) pairs and audit each as verify_transaction does.

    For transactions already passed by :func:`check_card` on active cards (activation and
    refusals take :func:`verify_transaction`). A pair spent before fails the run (unique
    constraint): the caller rolls back and takes the careful path.
    """
    now = _now()
    purposes = purpose if isinstance(purpose, list) else [purpose] * len(spent)
    spends = [_spent_row(card.id, tx, actor, online=online, at=now) for card, tx in spent]
    events = [
        audit_row(
            action,
            actor=actor,
            citizen_id=card.citizen_id,
            subject=f"card:{card.card_number}",
            details=_audit_details(tx, online=online),
            at=now,
        )
        for (card, tx), action in zip(spent, purposes, strict=True)
    ]
    return [Step(_SPEND, spends), audit_step(events)]


def verify_transaction(
    tx: SignedTransaction,
    *,
    actor: Actor,
    terminal: str,
    online: bool = True,
    require_pin: bool = False,
    purpose: str = "card.transaction",
) -> VerifiedTransaction:
    """Verify a card's signed transaction and spend its (card, ATC), or raise CardRefused.

    The (card, ATC) row is inserted in the caller's transaction: the caller's commit makes the
    tap and the spent counter durable together. Two copies racing on two workers meet the
    unique constraint; exactly one wins.
    """
    with _refusals_recorded(purpose, actor, f"card:{tx.card_number}"):
        card = _check(tx, terminal=terminal, online=online, require_pin=require_pin)
        row_id = _spend(card, tx, actor, online=online)
        if card.status == "issued" and tx.pin_verified:
            _activate(card, actor)
        audit(
            purpose,
            actor=actor,
            citizen_id=card.citizen_id,
            subject=f"card:{card.card_number}",
            details=_audit_details(tx, online=online),
        )
        return VerifiedTransaction(card.citizen_id, card.id, card.card_number, tx, row_id)


def _spend(card: Card, tx: SignedTransaction, actor: Actor, *, online: bool) -> int:
    """Record (card, ATC) as used and return its row id; a second use is REPLAYED.

    ``INSERT … ON CONFLICT DO NOTHING`` waits for a racing insert of the same pair to commit
    and then inserts nothing, so exactly one of two racing copies gets a row — without the
    SAVEPOINT round trips that catching the unique violation would cost.
    """
    dialect = db.session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    table = CardTransaction.__table__
    row_id = db.session.execute(
        insert(table)  # type: ignore[arg-type]
        .values(_spent_row(card.id, tx, actor, online=online, at=_now()))
        .on_conflict_do_nothing(index_elements=["card_id", "atc"])
        .returning(table.c.id)
    ).scalar_one_or_none()
    if row_id is None:
        raise CardRefused("REPLAYED")
    return int(row_id)


def _activate(card: Card, actor: Actor) -> None:
    _set_status(card, "active", None)
    card.activated_at = _now()
    audit(
        "card.activate", actor=actor, citizen_id=card.citizen_id, subject=f"card:{card.card_number}"
    )


def new_challenge(*, client_id: str) -> CardChallenge:
    """A single-use 32-byte nonce for card login, bound to the asking terminal."""
    ttl = int(current_app.config["CARD_CHALLENGE_SECONDS"])
    challenge = CardChallenge(
        nonce=secrets.token_hex(32), client_id=client_id, expires_at=_now() + timedelta(seconds=ttl)
    )
    db.session.add(challenge)
    db.session.commit()
    return challenge


def card_login(
    card_number: str, challenge_hex: str, signature: bytes, *, actor: Actor, client_id: str
) -> Card:
    """Check an INTERNAL AUTHENTICATE answer (the card signs only after its PIN)."""
    with _refusals_recorded("card.login", actor, f"card:{card_number}"):
        challenge = db.session.scalars(
            select(CardChallenge).where(CardChallenge.nonce == challenge_hex).with_for_update()
        ).first()
        if (
            challenge is None
            or challenge.client_id != client_id
            or challenge.used_at
            or _utc(challenge.expires_at) < _now()
        ):
            raise CardRefused("CHALLENGE_INVALID")
        # Spent whatever happens next: a challenge is tried once.
        challenge.used_at = _now()
        db.session.commit()
        card = db.session.scalars(select(Card).where(Card.card_number == card_number)).first()
        if card is None:
            raise CardRefused("UNKNOWN_CARD")
        try:
            verify_auth_signature(
                public_key_from_point(card.public_key),
                card_number,
                bytes.fromhex(challenge_hex),
                signature,
            )
        except SignatureError:
            raise CardRefused("BAD_SIGNATURE") from None
        if card.status == "suspended":
            raise CardRefused("CARD_SUSPENDED")
        if card.status not in ("issued", "active"):
            raise CardRefused("CARD_CANCELLED")
        if _utc(card.expires_at) < _now():
            raise CardRefused("CARD_EXPIRED")
        if card.status == "issued":
            _activate(card, actor)
        audit("card.login", actor=actor, citizen_id=card.citizen_id, subject=f"card:{card_number}")
        return card


def certificate_status(card_number: str) -> dict[str, Any]:
    """What an online terminal asks about a certificate: good, or revoked and why."""
    card = get_card(card_number)
    good = card.status in ("issued", "active") and _utc(card.expires_at) >= _now()
    return {
        "card_number": card.card_number,
        "certificate_serial": card.certificate_serial,
        "status": "good" if good else "revoked",
        "card_status": card.status,
        "not_after": _utc(card.expires_at),
    }


on_life_event(cancel_cards_of)
