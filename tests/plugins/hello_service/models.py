"""The test service's one table."""

from __future__ import annotations

from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from citizen_card.public import Base
from citizen_card.public import Encrypted


class Greeting(Base):
    """A greeting left by someone, with an optional (encrypted) phone to call back."""

    __tablename__ = "hello_service_greeting"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(Encrypted("hello_service_greeting.phone"))
    phone_index: Mapped[str | None] = mapped_column(String(64), index=True)
