"""Demo data for ``make run``: residents, their virtual cards, wallets, and demo clients.

Idempotent: only what is missing is added. Keys, secrets and card files go to instance/demo/.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import click
from flask import current_app
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


DEMO_PIN, DEMO_PUK = "123456", "12345678"
# name, kind, site, scopes (those not enabled in this deployment are dropped)
DEMO_CLIENTS = [
    (
        "Demo station 望京街道服务站",
        "station",
        "station-demo-01",
        [
            "cards:issue",
            "cards:read",
            "cards:suspend",
            "citizens:read",
            "citizens:write",
            "wallet:read",
            "card_auth:verify",
        ],
    ),
    (
        "Demo gate 国贸站",
        "terminal",
        "gate-demo-01",
        [
            "card_auth:verify",
            "card_auth:login",
            "cards:read",
            "wallet:read",
            "cards:suspend",
            "transit:tap",
            "transit:read",
        ],
    ),
    ("Demo bank 工商银行", "partner", None, ["wallet:topup"]),
]


def _demo_dir() -> Path:
    path = Path(current_app.instance_path) / "demo"
    (path / "cards").mkdir(parents=True, exist_ok=True)
    return path


def load_clients() -> None:
    """Demo station, gate and bank clients; keys and the bank's secret go to instance/demo/."""
    from card_reader.terminal import generate_key_file
    from card_reader.terminal import load_private_key
    from card_reader.terminal import public_jwks
    from citizen_card.oauth.clients import create_client
    from citizen_card.oauth.models import OAuthClient

    folder = _demo_dir()
    registry_file = folder / "clients.json"
    registry = json.loads(registry_file.read_text()) if registry_file.exists() else {}
    known = set(current_app.config["OAUTH2_SCOPES_SUPPORTED"])
    added = 0
    for name, kind, site, scopes in DEMO_CLIENTS:
        slug = kind
        entry = registry.get(slug)
        if entry and db.session.scalar(
            select(OAuthClient.id).where(OAuthClient.client_id == entry["client_id"])
        ):
            continue
        jwks = None
        if kind != "partner":
            key_file = folder / f"{slug}.pem"
            key = load_private_key(key_file) if key_file.exists() else generate_key_file(key_file)
            jwks = public_jwks(key)
        client, secret = create_client(
            name=name,
            kind=kind,
            organisation=name,
            site=site,
            jwks=jwks,
            scopes=[s for s in scopes if s in known],
            actor=DEMO_ACTOR,
        )
        registry[slug] = {
            "client_id": client.client_id,
            "site": site,
            "key": str(folder / f"{slug}.pem") if jwks else None,
        }
        if secret:
            secret_file = folder / f"{slug}.secret"
            secret_file.write_text(secret)
            secret_file.chmod(0o600)
        added += 1
    registry_file.write_text(json.dumps(registry, indent=2, ensure_ascii=False))
    click.echo(f"demo clients: {added} added (ids and keys in {folder})")


def load_cards() -> None:
    """A personalized virtual card for each demo resident who holds none (PIN 123456)."""
    from citizen_card.cards import actions as cards
    from citizen_card.cards.inprocess import issue_virtual_card
    from citizen_card.cards.models import HELD_STATES
    from citizen_card.cards.models import Card

    folder = _demo_dir() / "cards"
    added = 0
    for data in RESIDENTS:
        index = blind_index(data["national_id"], NATIONAL_ID_CONTEXT)
        citizen_id = db.session.scalar(select(Citizen.id).where(Citizen.national_id_index == index))
        if citizen_id is None:
            continue
        held = db.session.scalar(
            select(Card.card_number).where(
                Card.citizen_id == citizen_id, Card.status.in_(HELD_STATES)
            )
        )
        path = folder / f"citizen-{citizen_id}.json"
        if held and path.exists():
            continue
        if held:  # the card file was deleted: start again with a replacement
            cards.report_lost(held, actor=DEMO_ACTOR, reason="demo card file missing")
        issue_virtual_card(
            citizen_id,
            actor=DEMO_ACTOR,
            pin=DEMO_PIN,
            puk=DEMO_PUK,
            path=path,
            replacement=bool(held),
        )
        added += 1
    click.echo(f"demo cards: {added} issued (files in {folder}, PIN {DEMO_PIN})")


def load_wallets() -> None:
    """Put 50 元 on each demo resident's wallet the first time."""
    from citizen_card.ledger import actions as ledger

    added = 0
    for data in RESIDENTS:
        index = blind_index(data["national_id"], NATIONAL_ID_CONTEXT)
        citizen_id = db.session.scalar(select(Citizen.id).where(Citizen.national_id_index == index))
        if citizen_id is None:
            continue
        wallet = ledger.wallet_of(citizen_id)
        if ledger.statement(wallet, limit=1):
            continue
        clearing = ledger.get_account(ledger.TOPUP_CLEARING, "demo", allow_negative=True)
        ledger.post(
            "topup",
            [ledger.Leg(clearing, -5000), ledger.Leg(wallet, 5000)],
            actor=DEMO_ACTOR,
            memo="demo top-up",
        )
        added += 1
    db.session.commit()
    click.echo(f"demo wallets: {added} topped up with 50 元")
