"""Rules of the test service."""

from __future__ import annotations

from flask import current_app
from sqlalchemy import select

from citizen_card.public import Actor
from citizen_card.public import DomainError
from citizen_card.public import blind_index
from citizen_card.public import db
from citizen_card.public import record_audit
from tests.plugins.hello_service.models import Greeting

PHONE_INDEX = "hello_service_greeting.phone"


class GreetingTooLong(DomainError):
    """The greeting is longer than the configured limit."""

    status = 422
    code = "GREETING_TOO_LONG"
    title = "Greeting too long"
    title_zh = "问候语过长"
    service = "hello_service"


def leave_greeting(text: str, *, actor: Actor, phone: str | None = None) -> Greeting:
    """Store a greeting and audit it, in one transaction."""
    limit = current_app.config["HELLO_SERVICE_MAX_LENGTH"]
    if len(text) > limit:
        raise GreetingTooLong(f"at most {limit} characters", limit=limit)
    greeting = Greeting(text=text, phone=phone)
    if phone:
        greeting.phone_index = blind_index(phone, PHONE_INDEX)
    db.session.add(greeting)
    record_audit("hello_service.greet", actor=actor, details={"length": len(text)})
    db.session.commit()
    return greeting


def list_greetings(*, phone: str | None = None) -> list[Greeting]:
    """Greetings, oldest first; an exact phone match goes through the blind index."""
    query = select(Greeting).order_by(Greeting.id)
    if phone is not None:
        query = query.where(Greeting.phone_index == blind_index(phone, PHONE_INDEX))
    return list(db.session.scalars(query))
