"""``python -m card_reader issue``: the station flow from the command line, over real HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

from card_reader.terminal import generate_key_file
from card_reader.terminal import public_jwks
from card_reader.virtual import VirtualCard
from citizen_card.audit.actions import Actor
from citizen_card.cards.actions import get_card
from citizen_card.citizens import actions as citizens
from citizen_card.citizens.national_id import make_national_id
from citizen_card.oauth.clients import create_client
from tests.oauth.conftest import live  # noqa: F401  (the live server fixture)

ROOT = Path(__file__).resolve().parents[2]


def test_issue_command_runs_the_station_flow(live, tmp_path):  # noqa: F811
    key = generate_key_file(tmp_path / "station.pem")
    actor = Actor.system("test")
    with live.app.app_context():
        station, _ = create_client(
            name="Wangjing station",
            kind="station",
            organisation="望京街道",
            site="station-wj-02",
            scopes=["cards:issue"],
            jwks=public_jwks(key),
            actor=actor,
        )
        citizen = citizens.create_citizen(
            {
                "national_id": make_national_id("110105", date(1991, 9, 9), 41, "F"),
                "name": "孙悦",
                "district": "110105",
                "residence_type": "registered",
                "insurance_scheme": "employee",
                "employment_status": "employed",
            },
            actor=actor,
        )
        client_id, citizen_id = station.client_id, citizen.id
    VirtualCard.create(tmp_path / "card.json")
    args = [
        sys.executable,
        "-m",
        "card_reader",
        "issue",
        "--citizen",
        str(citizen_id),
        "--api",
        live.url,
        "--client-id",
        client_id,
        "--key",
        str(tmp_path / "station.pem"),
        "--card",
        str(tmp_path / "card.json"),
        "--pin",
        "135790",
        "--puk",
        "24680135",
    ]
    result = subprocess.run(
        args,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    issued = json.loads(result.stdout)
    assert issued["status"] == "issued"
    assert "written and locked" in result.stderr
    with live.app.app_context():
        assert get_card(issued["card_number"]).citizen_id == citizen_id
    info = subprocess.run(
        [
            sys.executable,
            "-m",
            "card_reader",
            "card",
            "info",
            "--card",
            str(tmp_path / "card.json"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert issued["card_number"] in info.stdout
    # A second card for the same citizen is refused with the problem's words.
    VirtualCard.create(tmp_path / "card2.json")
    args[args.index(str(tmp_path / "card.json"))] = str(tmp_path / "card2.json")
    again = subprocess.run(
        args,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert again.returncode == 1
    assert "already holds a card" in again.stderr
    assert "Traceback" not in again.stderr
