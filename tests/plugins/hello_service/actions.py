"""Rules of the test service."""

from __future__ import annotations

from flask import current_app
from sqlalchemy import select

from citizen_card.public import Actor
from citizen_card.public import DomainError
from citizen_card.public import db
from citizen_card.public import record_audit
from tests.plugins.hello_service.models import Greeting


class GreetingTooLong(DomainError):
    """The greeting is longer than the configured limit."""

    status = 422
    code = "GREETING_TOO_LONG"
    title = "Greeting too long"
    title_zh = "问候语过长"
    service = "hello_service"


def leave_greeting(text: str, *, actor: Actor) -> Greeting:
    """Store a greeting and audit it, in one transaction."""
    limit = current_app.config["HELLO_SERVICE_MAX_LENGTH"]
    if len(text) > limit:
        raise GreetingTooLong(f"at most {limit} characters", limit=limit)
    greeting = Greeting(text=text)
    db.session.add(greeting)
    record_audit("hello_service.greet", actor=actor, details={"length": len(text)})
    db.session.commit()
    return greeting


def list_greetings() -> list[Greeting]:
    """Every greeting, oldest first."""
    return list(db.session.scalars(select(Greeting).order_by(Greeting.id)))
