"""Extension singletons, created unbound and initialised in create_app."""

from __future__ import annotations

from typing import Any

from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

from citizen_card.db import Base
from citizen_card.pii import Encrypted


def _render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    # Migrations store what the database sees (a string), not our Python-side wrapper.
    if type_ == "type" and isinstance(obj, Encrypted):
        return f"sa.String(length={obj.impl.length})"
    return False


db = SQLAlchemy(model_class=Base)
migrate = Migrate(compare_type=True, render_as_batch=True, render_item=_render_item)
