# ruff: noqa: F811  (pytest fixtures imported from the card tests)
"""The lean tap route: taps as gates send them are read by hand; anything else, valid or
not, is judged by TapSchema exactly as before (docs/performance.md)."""

from __future__ import annotations

import json
import time

import pytest

from tests.cards.conftest import gate  # noqa: F401  (fixtures shared with the card tests)
from tests.cards.conftest import issue  # noqa: F401
from tests.cards.conftest import register_citizen  # noqa: F401
from tests.cards.conftest import station  # noqa: F401
from tests.transit.test_taps import TAPS
from tests.transit.test_taps import active_rider
from tests.transit.test_taps import wallet

A, B = "L1-TIANANMENXI", "L1-GUOMAO"  # 6,000 m: 3 元


def test_well_formed_and_other_valid_taps_get_the_same_answers(
    app, network, client, gate, register_citizen, issue
):
    card = active_rider(app, client, gate, register_citizen, issue, 2000)
    t = int(time.time()) - 20
    entry = {**card.sign(gate.site, at=t).to_json(), "direction": "in", "stop_id": A}
    # The schema reads "false" as a boolean; the hand-read path does not, and defers to it.
    exit_ = {**card.sign(gate.site, at=t + 10).to_json(), "direction": "out", "stop_id": B}
    exit_["pin_verified"] = "false"
    first = client.post(TAPS, headers=gate.headers, json=entry)
    second = client.post(TAPS, headers=gate.headers, json=exit_)
    assert first.status_code == second.status_code == 200, second.get_json()
    assert second.get_json()["fare_fen"] == 300
    again = client.post(TAPS, headers=gate.headers, json=entry)
    assert again.get_json() == {**first.get_json(), "replayed": True}
    assert wallet(app, card.citizen_id) == 1700


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"direction": "sideways"}, "direction"),
        ({"stop_id": ""}, "stop_id"),
        ({"atc": "7"}, "atc"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_taps_get_the_schemas_422(
    app, network, client, gate, register_citizen, issue, change, field
):
    card = active_rider(app, client, gate, register_citizen, issue, 2000)
    body = {**card.sign(gate.site).to_json(), "direction": "in", "stop_id": A, **change}
    r = client.post(TAPS, headers=gate.headers, json=body)
    assert r.status_code == 422
    assert r.headers["Content-Type"] == "application/problem+json"
    assert field in json.dumps(r.get_json())
    assert wallet(app, card.citizen_id) == 2000


def test_a_body_that_is_not_json_is_a_400(app, client, gate):
    r = client.post(
        TAPS, headers={**gate.headers, "Content-Type": "application/json"}, data="{not json"
    )
    assert r.status_code == 400
    assert r.headers["Content-Type"] == "application/problem+json"


def test_the_lean_route_is_documented_as_before(app, client):
    spec = client.get("/api/openapi.json").get_json()
    post = spec["paths"]["/api/v1/transit/taps"]["post"]
    body = post["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/Tap"}
    assert {"direction", "stop_id", "card_number", "signature"} <= set(
        spec["components"]["schemas"]["Tap"]["properties"]
    )
    answer = post["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer == {"$ref": "#/components/schemas/TapResult"}
    assert {"422", "401", "403"} <= set(post["responses"])
    assert post["security"] == [{"oauth2": ["transit:tap"]}]
