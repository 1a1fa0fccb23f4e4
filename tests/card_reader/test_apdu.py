"""APDU encoding/parsing, status words, and the terminal-side 61xx/6Cxx logic."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from card_reader.apdu import APDUFormatError
from card_reader.apdu import AuthenticationBlockedError
from card_reader.apdu import ClaNotSupportedError
from card_reader.apdu import CommandAPDU
from card_reader.apdu import ResponseAPDU
from card_reader.apdu import StatusWordError
from card_reader.apdu import VerificationFailedError
from card_reader.apdu import WrongLeError
from card_reader.apdu import error_for_sw
from card_reader.apdu import exchange
from card_reader.apdu import sw_meaning
from card_reader.errors import CardResponseError


@pytest.mark.parametrize(
    ("apdu", "encoded"),
    [
        (CommandAPDU(0x00, 0xA4, 0x04, 0x00), "00A40400"),  # case 1
        (CommandAPDU(0x00, 0xCA, 0x00, 0x5A, ne=19), "00CA005A13"),  # case 2S
        (CommandAPDU(0x00, 0xCA, 0x00, 0x5A, ne=256), "00CA005A00"),  # case 2S, Le 00
        (CommandAPDU(0x00, 0x20, 0x00, 0x81, b"\x31\x32"), "00200081023132"),  # case 3S
        (CommandAPDU(0x00, 0x88, 0, 0, b"\x01", ne=256), "0088000001" + "01" + "00"),  # 4S
        (CommandAPDU(0x00, 0xCA, 0xDF, 0x10, ne=65536), "00CADF10000000"),  # case 2E
        (CommandAPDU(0x00, 0xCA, 0xDF, 0x10, ne=257), "00CADF10000101"),  # case 2E
        (CommandAPDU(0x80, 0xDA, 0, 0, bytes(256)), "80DA0000000100" + "00" * 256),  # 3E
        (
            CommandAPDU(0x80, 0xDA, 0, 0, b"\x01", ne=4, extended=True),
            "80DA000000000101" + "0004",
        ),  # case 4E, forced
    ],
)
def test_encoding_of_every_case(apdu: CommandAPDU, encoded: str) -> None:
    assert apdu.to_bytes() == bytes.fromhex(encoded)
    assert bytes(apdu) == apdu.to_bytes()
    parsed = CommandAPDU.from_bytes(bytes.fromhex(encoded))
    assert (parsed.cla, parsed.ins, parsed.p1, parsed.p2, parsed.data, parsed.ne) == (
        apdu.cla,
        apdu.ins,
        apdu.p1,
        apdu.p2,
        apdu.data,
        apdu.ne,
    )


@settings(max_examples=200)
@given(
    cla=st.integers(0, 255),
    ins=st.integers(0, 255),
    p1=st.integers(0, 255),
    p2=st.integers(0, 255),
    data=st.binary(max_size=600),
    ne=st.integers(0, 65536),
    extended=st.booleans(),
)
def test_encode_parse_round_trip(
    cla: int, ins: int, p1: int, p2: int, data: bytes, ne: int, extended: bool
) -> None:
    apdu = CommandAPDU(cla, ins, p1, p2, data, ne, extended)
    parsed = CommandAPDU.from_bytes(apdu.to_bytes())
    assert (parsed.data, parsed.ne) == (data, ne)
    assert parsed.to_bytes() == apdu.to_bytes()


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "00",
        "00A404",
        "00A4040003AABB",
        "00A40400 00 00",
        "00A40400 00 0002 01",
        "00A4040000000000",
    ],
)
def test_malformed_apdus(raw: str) -> None:
    with pytest.raises(APDUFormatError):
        CommandAPDU.from_bytes(bytes.fromhex(raw.replace(" ", "")))


@pytest.mark.parametrize(
    "kwargs",
    [{"cla": 256}, {"ins": -1}, {"p1": 300}, {"data": bytes(65536)}, {"ne": 65537}, {"ne": -1}],
)
def test_unencodable_fields(kwargs: dict[str, object]) -> None:
    fields: dict[str, object] = {"cla": 0, "ins": 0xCA, **kwargs}
    with pytest.raises(APDUFormatError):
        CommandAPDU(**fields)  # type: ignore[arg-type]


def test_response_apdu() -> None:
    response = ResponseAPDU.from_bytes(bytes.fromhex("0102 9000"))
    assert (response.data, response.sw, response.ok) == (b"\x01\x02", 0x9000, True)
    assert response.check() is response
    assert str(response) == "01 02 [9000]"
    assert ResponseAPDU.status(0x6A82).to_bytes() == b"\x6a\x82"
    with pytest.raises(CardResponseError):
        ResponseAPDU.from_bytes(b"\x90")


def test_status_words_become_typed_errors() -> None:
    with pytest.raises(VerificationFailedError) as failed:
        ResponseAPDU.status(0x63C2).check()
    assert failed.value.tries_left == 2 and "2 tries left" in str(failed.value)
    assert isinstance(error_for_sw(0x6983), AuthenticationBlockedError)
    assert isinstance(error_for_sw(0x6E00), ClaNotSupportedError)
    wrong_le = error_for_sw(0x6C13)
    assert isinstance(wrong_le, WrongLeError) and wrong_le.exact_length == 19
    unknown = error_for_sw(0x6999)
    assert type(unknown) is StatusWordError and "6999" in str(unknown)
    assert ResponseAPDU.status(0x6283).check(0x6283).sw == 0x6283


def test_sw_meanings() -> None:
    assert sw_meaning(0x9000) == "success"
    assert "GET RESPONSE" in sw_meaning(0x6100)
    assert "256" in sw_meaning(0x6100)
    assert "exact length is 19" in sw_meaning(0x6C13)
    assert sw_meaning(0x1234) == "unknown status word"


class ScriptedCard:
    """Answers with a fixed script and records what the terminal sent."""

    def __init__(self, *answers: str) -> None:
        self.answers = [bytes.fromhex(a.replace(" ", "")) for a in answers]
        self.sent: list[bytes] = []

    def __call__(self, apdu: bytes) -> bytes:
        self.sent.append(apdu)
        return self.answers.pop(0)


def test_exchange_resends_on_6cxx() -> None:
    card = ScriptedCard("6C13", "01" * 19 + "9000")
    response = exchange(card, CommandAPDU(0x00, 0xCA, 0x00, 0x5A, ne=5))
    assert response.data == b"\x01" * 19 and response.ok
    assert card.sent[1] == bytes.fromhex("00CA005A13")


def test_exchange_follows_61xx_with_get_response() -> None:
    card = ScriptedCard("AA" * 256 + "6100", "BB" * 256 + "6110", "CC" * 16 + "9000")
    response = exchange(card, CommandAPDU(0x00, 0xCA, 0xDF, 0x10, ne=256))
    assert response.data == b"\xaa" * 256 + b"\xbb" * 256 + b"\xcc" * 16
    assert card.sent[1:] == [bytes.fromhex("00C0000000"), bytes.fromhex("00C0000010")]


def test_exchange_keeps_a_final_error() -> None:
    card = ScriptedCard("AA6102", "6A88")
    response = exchange(card, CommandAPDU(0x00, 0xCA, 0, 0x5A, ne=1))
    assert response.sw == 0x6A88 and response.data == b"\xaa"


def test_exchange_gives_up_on_an_endless_chain() -> None:
    card = ScriptedCard(*["006101"] * 400)
    with pytest.raises(CardResponseError):
        exchange(card, CommandAPDU(0x00, 0xCA, 0, 0x5A, ne=1))
