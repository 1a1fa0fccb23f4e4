"""The card's whole life again, with every APDU going pyscard -> pcscd -> vpcd -> the card."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from card_reader.virtual import VirtualCard
from tests.card_reader.conftest import pcsc_stack  # noqa: F401  (session PC/SC stack fixture)
from tests.card_reader.helpers import PcscStack
from tests.cards.conftest import run_station_flow

pytestmark = pytest.mark.pcsc
VERIFY = "/api/v1/card-auth/verify"


@pytest.fixture()
def pcsc_reader(pcsc_stack: PcscStack) -> Iterator[object]:  # noqa: F811
    """A real PC/SC reader; ``insert(card)`` puts a fresh blank virtual card in it."""
    from card_reader.vpcd import VpcdBridge

    def insert() -> object:
        bridge = pcsc_stack.bridge
        assert isinstance(bridge, VpcdBridge)
        bridge.swap_card(VirtualCard.create())
        pcsc_stack.reader.reset()
        return pcsc_stack.reader

    yield insert


def test_issue_tap_lose_replace_through_pcscd(client, station, gate, register_citizen, pcsc_reader):
    citizen_id = register_citizen()
    card = run_station_flow(client, station, citizen_id, reader=pcsc_reader())
    r = client.post(VERIFY, headers=gate.headers, json=card.sign(gate.site, pin=True).to_json())
    assert r.status_code == 200, r.get_json()
    r = client.post(f"/api/v1/cards/{card.number}/report-lost", headers=station.headers, json={})
    assert r.status_code == 200
    r = client.post(VERIFY, headers=gate.headers, json=card.sign(gate.site, pin=True).to_json())
    assert r.get_json()["reason"] == "CARD_SUSPENDED"
    delta = client.get("/api/v1/cards/deny-list", headers=gate.headers).get_json()["changes"]
    assert card.number in {c["card_number"] for c in delta}
    # The replacement card goes into the same reader; the old card is kept as a plain object.
    old_card_state = card
    new = run_station_flow(client, station, citizen_id, replacement=True, reader=pcsc_reader())
    r = client.post(VERIFY, headers=gate.headers, json=new.sign(gate.site, pin=True).to_json())
    assert r.status_code == 200
    assert (
        client.get(f"/api/v1/cards/{old_card_state.number}", headers=station.headers).get_json()[
            "status"
        ]
        == "replaced"
    )
