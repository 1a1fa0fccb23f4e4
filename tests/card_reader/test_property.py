"""Property tests: random APDUs never crash the card and never break its invariants.

The card must answer every input with a status word (never raise, never need ``6F 00``),
and whatever the sequence: the ATC never decreases, retry counters stay in range, the life
cycle only moves forward, a locked card's key and data never change, every ``90 00`` SIGN
TRANSACTION verifies, and the state file always equals the state in memory.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck
from hypothesis import event
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from card_reader.apdu import CommandAPDU
from card_reader.card import CitizenCardClient
from card_reader.issuer import Issuer
from card_reader.issuer import personalize
from card_reader.protocol import AID
from card_reader.protocol import PIN_MAX_TRIES
from card_reader.protocol import PUK_MAX_TRIES
from card_reader.protocol import Lifecycle
from card_reader.protocol import Tag
from card_reader.protocol import decode_sign_response
from card_reader.protocol import encode_terminal_data
from card_reader.protocol import transaction_message
from card_reader.protocol import verify_signature
from card_reader.virtual import CardState
from card_reader.virtual import VirtualCard
from card_reader.virtual import VirtualReader
from tests.card_reader.helpers import CARD_NUMBER
from tests.card_reader.helpers import CITIZEN_REF
from tests.card_reader.helpers import HOLDER
from tests.card_reader.helpers import PIN
from tests.card_reader.helpers import PUK
from tests.card_reader.helpers import VALID_FROM
from tests.card_reader.helpers import VALID_UNTIL
from tests.card_reader.helpers import CardHarness

TERMINAL_DATA = encode_terminal_data("gate-1", bytes(8), 1_767_225_600, 100)
# Statuses the application may answer; anything else (6F00 above all) is a bug.
ALLOWED_SW1 = {0x61, 0x62, 0x63, 0x65, 0x67, 0x68, 0x69, 0x6A, 0x6C, 0x6D, 0x6E, 0x90}

datas = st.one_of(
    st.just(b""),
    st.sampled_from(
        [
            AID,
            PIN.encode(),
            b"000000",
            PUK.encode(),
            b"00000000",
            (PUK + PIN).encode(),
            (PIN + "654321").encode(),
            (PIN + PUK).encode(),
            CARD_NUMBER.encode(),
            b"20250101",
            b"\x30\x03\x02\x01\x00",
            TERMINAL_DATA,
        ]
    ),
    st.binary(max_size=40),
    st.binary(min_size=250, max_size=600),
)
byte = st.integers(0, 255)
nes = st.one_of(st.sampled_from([0, 1, 4, 19, 69, 256, 65536]), st.integers(0, 65536))
tags = st.one_of(st.sampled_from([int(t) for t in Tag]), st.integers(0, 0xFFFF))
pins = st.sampled_from([PIN, "000000", "654321", "12345", "12345a", ""])
puks = st.sampled_from([PUK, "00000000", "87654321", "1234567", ""])
field_values = st.one_of(
    st.sampled_from(
        [
            CARD_NUMBER.encode(),
            b"6200000000000012345",
            HOLDER.encode(),
            b"20250101",
            b"20301231",
            b"20250230",
            b"\x30\x03\x02\x01\x00",
        ]
    ),
    st.binary(max_size=40),
)


def _cmd(cla: int, ins: int, p1: int, p2: int, data: bytes | str = b"", ne: int = 0) -> CommandAPDU:
    return CommandAPDU(cla, ins, p1, p2, data.encode() if isinstance(data, str) else data, ne)


# One strategy per instruction, close to what a terminal sends, so that random sequences
# reach deep states: verified, blocked and unblocked PINs, terminated cards, chains, pending
# GET RESPONSE data, locked cards.
plausible = st.one_of(
    st.builds(lambda pin: _cmd(0x00, 0x20, 0x00, 0x81, pin), pins),
    st.just(_cmd(0x00, 0x20, 0xFF, 0x81)),
    st.builds(lambda a, b: _cmd(0x00, 0x24, 0x00, 0x81, a + b), pins, pins),
    st.builds(lambda a, b: _cmd(0x00, 0x24, 0x00, 0x82, a + b), puks, puks),
    st.builds(lambda puk, pin: _cmd(0x00, 0x2C, 0x00, 0x81, puk + pin), puks, pins),
    st.builds(lambda puk: _cmd(0x00, 0x2C, 0x01, 0x81, puk), puks),
    st.builds(lambda tag, ne: _cmd(0x00, 0xCA, tag >> 8, tag & 0xFF, ne=ne), tags, nes),
    st.builds(lambda ne: _cmd(0x00, 0xC0, 0, 0, ne=ne), nes),
    st.builds(lambda c, ne: _cmd(0x00, 0x88, 0, 0, c, ne), st.binary(max_size=140), nes),
    st.builds(lambda ne: _cmd(0x80, 0x54, 0, 0, TERMINAL_DATA, ne), nes),
    st.builds(lambda d, ne: _cmd(0x80, 0x54, 0, 0, d, ne), st.binary(max_size=40), nes),
    st.builds(lambda ne: _cmd(0x80, 0x46, 0, 0, ne=ne), nes),
    st.builds(
        lambda cla, tag, value: _cmd(cla, 0xDA, tag >> 8, tag & 0xFF, value),
        st.sampled_from([0x80, 0x90]),
        tags,
        field_values,
    ),
    st.builds(lambda pin, puk: _cmd(0x80, 0x2E, 0, 0, pin + puk), pins, puks),
    st.just(_cmd(0x80, 0xF0, 0, 0)),
)
random_commands = st.builds(CommandAPDU, byte, byte, byte, byte, datas, nes, st.booleans())
commands = st.one_of(plausible, plausible, plausible, random_commands)
SELECT = CommandAPDU(0x00, 0xA4, 0x04, 0x00, AID, 256)
# Steps: a command, a warm reset, or a SELECT (so that most commands reach the application).
steps = st.lists(
    st.one_of(commands, commands, commands, st.just("reset"), st.just(SELECT)),
    min_size=1,
    max_size=40,
)


@functools.cache
def templates() -> dict[str, dict[str, object]]:
    """State files of a blank card and of a personalized, locked card (made once)."""
    blank = VirtualCard()
    issued = VirtualCard()
    with VirtualReader(issued) as reader:
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
    return {"blank": blank.state_json(), "issued": issued.state_json()}


class Invariants:
    """Tracks what must hold across a sequence of commands."""

    def __init__(self, card: VirtualCard) -> None:
        self.card = card
        self.atc = card.atc
        self.lifecycle = card.lifecycle
        self.locked_state: dict[str, object] | None = None
        if card.lifecycle != Lifecycle.PERSONALIZATION:
            self.locked_state = self._frozen_part()

    def _frozen_part(self) -> dict[str, object]:
        state = self.card.state_json()
        return {"private_key": state["private_key"], "objects": state["objects"]}

    def check(self, command: CommandAPDU | None, response: bytes | None) -> None:
        card = self.card
        if response is not None:
            assert len(response) >= 2
            assert response[-2] in ALLOWED_SW1, response.hex()
            assert response[-2:] != b"\x6f\x00"
        assert card.atc >= self.atc
        self.atc = card.atc
        assert card.lifecycle >= self.lifecycle  # PERSONALIZATION < OPERATIONAL < TERMINATED
        if self.lifecycle == Lifecycle.PERSONALIZATION and card.lifecycle != self.lifecycle:
            assert card.lifecycle == Lifecycle.OPERATIONAL
            self.locked_state = self._frozen_part()
        self.lifecycle = card.lifecycle
        if self.locked_state is not None:
            assert self._frozen_part() == self.locked_state
        if card.pin_tries_left is not None:
            assert 0 <= card.pin_tries_left <= PIN_MAX_TRIES
        if card.puk_tries_left is not None:
            assert 0 <= card.puk_tries_left <= PUK_MAX_TRIES
        if card.lifecycle == Lifecycle.TERMINATED:
            assert card.puk_tries_left == 0
        if (
            command is not None
            and response is not None
            and command.cla == 0x80
            and command.ins == 0x54
            and response[-2:] == b"\x90\x00"
        ):
            atc, flag, signature = decode_sign_response(response[:-2])
            assert atc == card.atc
            message = transaction_message(
                CARD_NUMBER, atc, "gate-1", bytes(8), 1_767_225_600, 100, flag
            )
            key = card.public_key
            assert key is not None
            verify_signature(key, message, signature)
        path = card.path
        if path is not None:
            assert json.loads(path.read_text()) == card.state_json()


def fresh_card(template: dict[str, object], path: Path) -> VirtualCard:
    """A card in the template's state, persisted to ``path``."""
    card = VirtualCard(CardState.from_json(template), path)
    card.save()
    return card


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.one_of(st.binary(max_size=300), commands.map(CommandAPDU.to_bytes)))
def test_any_bytes_get_a_status_word_in_process(raw: bytes) -> None:
    for template in templates().values():
        card = VirtualCard(CardState.from_json(template))
        card.power_up()
        assert card.execute(SELECT.to_bytes())[-2:] == b"\x90\x00"
        response = card.execute(raw)
        assert len(response) >= 2
        assert response[-2] in ALLOWED_SW1 and response[-2:] != b"\x6f\x00"


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(kind=st.sampled_from(["blank", "issued"]), sequence=steps)
def test_random_command_sequences_keep_invariants(
    harness: CardHarness,
    tmp_path_factory: pytest.TempPathFactory,
    kind: str,
    sequence: list[CommandAPDU | str],
) -> None:
    path = tmp_path_factory.mktemp("prop") / "card.json"
    card = fresh_card(templates()[kind], path)
    harness.insert(card)
    invariants = Invariants(card)
    for step in [SELECT, *sequence]:
        if step == "reset":
            harness.reader.reset()
            invariants.check(None, None)
            continue
        assert isinstance(step, CommandAPDU)
        response = harness.reader.transmit_raw(step.to_bytes())
        event(f"SW {response[-2:].hex().upper()}")
        invariants.check(step, response)
    # A reload from the file is the same card.
    reloaded = VirtualCard.load(path)
    assert reloaded.state_json() == card.state_json()
