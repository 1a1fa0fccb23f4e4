"""Fixtures of the card tests: a station, a gate terminal, citizens, and issued virtual cards."""

from __future__ import annotations

import base64
import secrets
import time
from dataclasses import dataclass
from datetime import date

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc.jwk import ECKey

from card_reader.card import CitizenCardClient
from card_reader.protocol import SignedTransaction
from card_reader.protocol import public_key_to_point
from card_reader.virtual import VirtualCard
from card_reader.virtual import VirtualReader
from citizen_card.audit.actions import Actor
from citizen_card.citizens.national_id import make_national_id
from citizen_card.oauth.clients import create_client

PIN = "246810"
PUK = "13572468"
_seq = iter(range(1, 500))


@dataclass
class Terminal:
    """A terminal client: its token headers and the terminal id its cards sign for."""

    headers: dict[str, str]
    site: str


@pytest.fixture()
def station(bearer) -> Terminal:
    """A community service station client that issues cards."""
    headers = bearer(
        "cards:issue",
        "cards:read",
        "cards:suspend",
        "citizens:write",
        "citizens:read",
        kind="station",
        organisation="朝阳区望京街道服务站",
        site="station-wj-01",
    )
    return Terminal(headers, "station-wj-01")


@pytest.fixture()
def gate(app, client) -> Terminal:
    """A gate terminal authenticated with private_key_jwt, as terminals are."""
    from authlib.oauth2.rfc7523 import private_key_jwt_sign

    key = ec.generate_private_key(ec.SECP256R1())
    site = f"gate-{secrets.token_hex(3)}"
    with app.app_context():
        registered, _ = create_client(
            name="Gate",
            kind="terminal",
            organisation="Beijing Subway",
            site=site,
            scopes=[
                "card_auth:verify",
                "card_auth:login",
                "cards:read",
                "wallet:read",
                "cards:suspend",
                "transit:tap",
                "transit:read",
            ],
            jwks={"keys": [ECKey.import_key(key.public_key()).as_dict()]},
            actor=Actor.system("test"),
        )
        client_id = registered.client_id
    assertion = private_key_jwt_sign(
        ECKey.import_key(key), client_id, "http://localhost/oauth/token", alg="ES256"
    )
    r = client.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        },
    )
    assert r.status_code == 200, r.get_json()
    return Terminal({"Authorization": f"Bearer {r.get_json()['access_token']}"}, site)


@pytest.fixture()
def register_citizen(client, station):
    """register_citizen(**fields) -> citizen id, through the registry API."""

    def register(**overrides) -> int:
        data = {
            "national_id": make_national_id("110105", date(1985, 6, 1), next(_seq), "F"),
            "name": "赵丽",
            "phone": "13600136000",
            "district": "110105",
            "residence_type": "registered",
            "insurance_scheme": "employee",
            "employment_status": "employed",
        }
        data.update(overrides)
        r = client.post("/api/v1/citizens", json=data, headers=station.headers)
        assert r.status_code == 201, r.get_json()
        return int(r.get_json()["id"])

    return register


@dataclass
class IssuedCard:
    """A personalized virtual card in a reader, and its number."""

    card: CitizenCardClient
    number: str
    citizen_id: int

    def sign(
        self, terminal: str, amount_fen: int = 0, *, pin: bool = False, at: int | None = None
    ) -> SignedTransaction:
        """Tap: select, (verify PIN,) and sign one transaction."""
        self.card.select()
        if pin:
            self.card.verify_pin(PIN)
        return self.card.sign_transaction(
            terminal, secrets.token_bytes(8), int(time.time()) if at is None else at, amount_fen
        )


def run_station_flow(
    client, station: Terminal, citizen_id: int, *, replacement: bool = False, reader=None
) -> IssuedCard:
    """The whole issuance at a station through the HTTP API.

    ``reader`` holds a blank card (a PC/SC reader in the pcsc tests); by default a blank
    virtual card in an in-process reader.
    """
    card = CitizenCardClient(reader or VirtualReader(VirtualCard.create()))
    r = client.post(
        "/api/v1/cards/issuance",
        headers=station.headers,
        json={"citizen_id": citizen_id, "replacement": replacement},
    )
    assert r.status_code == 201, r.get_json()
    request_id = r.get_json()["id"]
    card.select()
    point = public_key_to_point(card.generate_key_pair())
    r = client.post(
        f"/api/v1/cards/issuance/{request_id}/personalize",
        headers=station.headers,
        json={"public_key": point.hex()},
    )
    assert r.status_code == 200, r.get_json()
    data = r.get_json()
    card.write_data(
        card_number=data["card_number"],
        holder_name=data["holder_name"],
        citizen_ref=data["citizen_ref"],
        valid_from=date.fromisoformat(data["valid_from"]),
        valid_until=date.fromisoformat(data["valid_until"]),
        card_certificate=base64.b64decode(data["card_certificate"]),
        issuer_certificate=base64.b64decode(data["issuer_certificate"]),
    )
    card.set_pin_puk(PIN, PUK)
    card.lock()
    r = client.post(f"/api/v1/cards/issuance/{request_id}/complete", headers=station.headers)
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["status"] == "issued"
    return IssuedCard(card, data["card_number"], citizen_id)


@pytest.fixture()
def issue(client, station):
    """issue(citizen_id, replacement=False) -> IssuedCard."""
    return lambda citizen_id, **kw: run_station_flow(client, station, citizen_id, **kw)
