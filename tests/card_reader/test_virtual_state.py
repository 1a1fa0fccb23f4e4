"""The virtual card's state file: creation, format, atomic writes, and bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from card_reader import open_reader
from card_reader.card import CitizenCardClient
from card_reader.errors import CardReaderError
from card_reader.errors import VirtualCardStateError
from card_reader.issuer import Issuer
from card_reader.issuer import personalize
from card_reader.protocol import Lifecycle
from card_reader.virtual import VirtualCard
from tests.card_reader.helpers import CARD_NUMBER
from tests.card_reader.helpers import CITIZEN_REF
from tests.card_reader.helpers import HOLDER
from tests.card_reader.helpers import PIN
from tests.card_reader.helpers import PUK
from tests.card_reader.helpers import VALID_FROM
from tests.card_reader.helpers import VALID_UNTIL


def test_blank_card_in_one_call(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    card = VirtualCard.create(path)
    assert card.lifecycle == Lifecycle.PERSONALIZATION and card.atc == 0
    state = json.loads(path.read_text())
    assert state == {
        "format": "citizen-card-virtual/1",
        "lifecycle": "personalization",
        "private_key": None,
        "objects": {},
        "pin": None,
        "puk": None,
        "atc": 0,
    }
    with pytest.raises(VirtualCardStateError, match="already exists"):
        VirtualCard.create(path)
    VirtualCard.create(path, overwrite=True)


def test_personalized_state_file(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    with open_reader("virtual", card=VirtualCard.create(path)) as reader:
        personalize(
            CitizenCardClient(reader),
            issuer=Issuer.generate_test_issuer(),
            card_number=CARD_NUMBER,
            holder_name=HOLDER,
            citizen_ref=CITIZEN_REF,
            valid_from=VALID_FROM,
            valid_until=VALID_UNTIL,
            pin=PIN,
            puk=PUK,
        )
    state = json.loads(path.read_text())
    assert state["lifecycle"] == "operational"
    assert len(bytes.fromhex(state["private_key"])) == 32
    assert bytes.fromhex(state["objects"]["005A"]).decode() == CARD_NUMBER
    assert state["pin"]["tries_left"] == 3 and state["puk"]["tries_left"] == 10
    assert PIN not in path.read_text() and PUK not in path.read_text()  # salted hashes only
    assert [p.name for p in tmp_path.iterdir()] == ["card.json"]  # no temp files left
    # open_reader also takes the file name.
    with open_reader("virtual", card=path) as reader:
        client = CitizenCardClient(reader)
        client.select()
        assert client.card_number() == CARD_NUMBER


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"format": "other"}',
        '{"format": "citizen-card-virtual/1", "lifecycle": "open"}',
    ],
)
def test_bad_state_files(tmp_path: Path, text: str) -> None:
    path = tmp_path / "card.json"
    path.write_text(text)
    with pytest.raises(VirtualCardStateError):
        VirtualCard.load(path)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("atc", -1),
        ("atc", 2**32),
        ("atc", "1"),
        ("objects", {"DF20": "00"}),
        ("objects", {"ZZZZ": "00"}),
        ("private_key", "zz"),
        ("pin", {"salt": "00", "digest": "00", "tries_left": 4}),
        ("puk", {"salt": "00"}),
    ],
)
def test_inconsistent_state_is_refused(tmp_path: Path, key: str, value: object) -> None:
    path = tmp_path / "card.json"
    VirtualCard.create(path)
    state = json.loads(path.read_text())
    state[key] = value
    path.write_text(json.dumps(state))
    with pytest.raises(VirtualCardStateError):
        VirtualCard.load(path)


def test_locked_card_must_be_complete(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    VirtualCard.create(path)
    state = json.loads(path.read_text())
    state["lifecycle"] = "operational"
    path.write_text(json.dumps(state))
    with pytest.raises(VirtualCardStateError, match="must be complete"):
        VirtualCard.load(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(VirtualCardStateError, match="no virtual card"):
        VirtualCard.load(tmp_path / "absent.json")
    with pytest.raises(CardReaderError):
        open_reader("virtual", card=tmp_path / "absent.json")


def test_open_reader_argument_errors() -> None:
    with pytest.raises(CardReaderError, match="unknown card reader backend"):
        open_reader("nfc")
    with pytest.raises(CardReaderError, match="needs a card"):
        open_reader("virtual")
    with pytest.raises(CardReaderError, match="needs a card"):
        open_reader("vpcd")


def test_in_memory_card_needs_no_file() -> None:
    card = VirtualCard.create()
    assert card.path is None
    card.save()  # no-op


def test_card_state_json_is_the_file(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    card = VirtualCard.create(path)
    assert card.state_json() == json.loads(path.read_text())
