"""Demo data for ``make run``: a few residents. Idempotent: only what is missing is added."""

from __future__ import annotations

from datetime import date

import click
from sqlalchemy import select

from citizen_card.audit.actions import Actor
from citizen_card.citizens import actions as citizens
from citizen_card.citizens.models import NATIONAL_ID_CONTEXT
from citizen_card.citizens.models import Citizen
from citizen_card.citizens.national_id import make_national_id
from citizen_card.extensions import db
from citizen_card.pii import blind_index

DEMO_ACTOR = Actor.system("demo")

# Fixed numbers (valid GB 11643 check digits), so every run finds the same residents.
RESIDENTS = [
    {
        "national_id": make_national_id("110105", date(1988, 5, 12), 21, "F"),
        "name": "李春梅",
        "phone": "13800138001",
        "district": "110105",
        "residence_type": "registered",
        "insurance_scheme": "employee",
        "employment_status": "employed",
    },
    {
        "national_id": make_national_id("110108", date(1952, 11, 3), 7, "M"),
        "name": "王建国",
        "phone": "13900139002",
        "district": "110108",
        "residence_type": "registered",
        "insurance_scheme": "employee",
        "employment_status": "retired",
    },
    {
        "national_id": make_national_id("130102", date(2004, 2, 29), 88, "M"),
        "name": "张晓宇",
        "phone": "13700137003",
        "district": "110112",
        "residence_type": "resident",
        "insurance_scheme": "resident",
        "employment_status": "student",
    },
]


def load_residents() -> None:
    """Register the demo residents that are not registered yet."""
    added = 0
    for data in RESIDENTS:
        index = blind_index(data["national_id"], NATIONAL_ID_CONTEXT)
        if db.session.scalar(select(Citizen.id).where(Citizen.national_id_index == index)):
            continue
        citizens.create_citizen(data, actor=DEMO_ACTOR)
        added += 1
    click.echo(f"demo residents: {added} added, {len(RESIDENTS) - added} already there")
