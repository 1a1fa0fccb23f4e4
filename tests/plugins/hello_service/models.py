"""The test service's one table."""

from __future__ import annotations

from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from citizen_card.public import Base


class Greeting(Base):
    """A greeting left by someone."""

    __tablename__ = "hello_service_greeting"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(String(200))
