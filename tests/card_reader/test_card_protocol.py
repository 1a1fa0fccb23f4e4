"""Protocol tests: every command and every status word, for each backend.

Each test runs twice through the ``harness`` fixture: in process and through
pyscard -> pcscd -> vpcd. Commands are raw bytes where the exact status word matters, and
the high-level client where the behaviour does.
"""

from __future__ import annotations

import json
import shutil

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from card_reader import CardReader
from card_reader.apdu import AuthenticationBlockedError
from card_reader.apdu import CommandAPDU
from card_reader.apdu import ConditionsNotSatisfiedError
from card_reader.apdu import ResponseAPDU
from card_reader.apdu import SecurityStatusNotSatisfiedError
from card_reader.apdu import VerificationFailedError
from card_reader.apdu import exchange
from card_reader.card import CitizenCardClient
from card_reader.errors import SignatureError
from card_reader.protocol import AID
from card_reader.protocol import ATC_MAX
from card_reader.protocol import ATR
from card_reader.protocol import SignedTransaction
from card_reader.protocol import Tag
from card_reader.protocol import auth_message
from card_reader.protocol import decode_sign_response
from card_reader.protocol import encode_terminal_data
from card_reader.protocol import public_key_from_point
from card_reader.protocol import public_key_to_point
from card_reader.protocol import transaction_message
from card_reader.protocol import verify_auth_signature
from card_reader.protocol import verify_signature
from card_reader.terminal import read_transaction
from card_reader.virtual import VirtualCard
from tests.card_reader.helpers import CARD_NUMBER
from tests.card_reader.helpers import CITIZEN_REF
from tests.card_reader.helpers import HOLDER
from tests.card_reader.helpers import PIN
from tests.card_reader.helpers import PUK
from tests.card_reader.helpers import VALID_FROM
from tests.card_reader.helpers import VALID_UNTIL
from tests.card_reader.helpers import CardHarness
from tests.card_reader.helpers import Issued

SELECT = "00A40400 09 F0434954495A454E01 00"
SELECT_NO_FCI = "00A4040C 09 F0434954495A454E01"
TERMINAL = "gate-0042"
UN = bytes.fromhex("0011223344556677")
TS = 1_767_225_600


def sign_apdu(terminal_id: str = TERMINAL, amount: int = 200, ne: int = 256) -> CommandAPDU:
    """A SIGN TRANSACTION command with fixed terminal data."""
    return CommandAPDU(0x80, 0x54, 0, 0, encode_terminal_data(terminal_id, UN, TS, amount), ne)


def verify_apdu(pin: str) -> str:
    """VERIFY with the PIN as ASCII digits."""
    return "00200081 06" + pin.encode().hex()


def get_data(tag: int, le: str = "00") -> str:
    """GET DATA for ``tag`` with a short Le."""
    return f"00CA{tag:04X}{le}"


# --- ATR, SELECT, class and instruction checks ----------------------------------------------


def test_atr_reaches_the_terminal(blank: CardHarness) -> None:
    assert blank.reader.atr() == ATR


def test_select_returns_fci_with_aid_and_lifecycle(blank: CardHarness) -> None:
    response = blank.raw(SELECT)
    assert response[-2:] == b"\x90\x00"
    fci = response[:-2]
    assert fci[0] == 0x6F and fci[1] == len(fci) - 2
    assert bytes((0x84, len(AID))) + AID in fci
    assert bytes.fromhex("A506 800101 810101") in fci  # personalization state, version 1


class CountingReader:
    """Wraps a reader and counts the command APDUs that reach it."""

    def __init__(self, reader: CardReader) -> None:
        self.inner = reader
        self.sent: list[bytes] = []

    def transmit(self, command: CommandAPDU) -> ResponseAPDU:
        return exchange(self.transmit_raw, command)

    def transmit_raw(self, apdu: bytes) -> bytes:
        self.sent.append(apdu)
        return self.inner.transmit_raw(apdu)


def test_fci_carries_the_card_number_so_a_tap_is_two_commands(issued: Issued) -> None:
    response = issued.h.raw(SELECT)
    assert bytes((0x5A, 19)) + CARD_NUMBER.encode() in response
    counting = CountingReader(issued.h.reader)
    card = CitizenCardClient(counting)  # type: ignore[arg-type]
    transaction = read_transaction(card, terminal_id=TERMINAL, amount_fen=200)
    transaction.verify(issued.public_key)
    assert [apdu[:2] for apdu in counting.sent] == [b"\x00\xa4", b"\x80\x54"]


def test_select_without_fci(blank: CardHarness) -> None:
    assert blank.raw(SELECT_NO_FCI) == b"\x90\x00"


def test_select_unknown_aid_is_6a82_and_deselects(issued: Issued) -> None:
    h = issued.h
    assert h.sw(SELECT) == 0x9000
    assert h.sw("00A40400 09 F0434954495A454E02 00") == 0x6A82
    assert h.sw(get_data(Tag.CARD_NUMBER)) == 0x6985


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("00A40000 09 F0434954495A454E01 00", 0x6A86),  # P1 00: select by file id
        ("00A40401 09 F0434954495A454E01 00", 0x6A86),  # P2 01: "last occurrence"
        ("00A40400 04 F0434954 00", 0x6700),  # AID shorter than 5 bytes
        ("00A40400 11 " + "AA" * 17 + " 00", 0x6700),  # AID longer than 16 bytes
        ("00A40400", 0x6700),  # no AID at all
    ],
)
def test_select_errors(blank: CardHarness, apdu: str, sw: int) -> None:
    assert blank.sw(apdu) == sw


@pytest.mark.parametrize(
    "apdu",
    [
        get_data(Tag.CARD_NUMBER),
        verify_apdu(PIN),
        "00200081",
        "802E0000 0E" + (PIN + PUK).encode().hex(),
        "80460000 00",
        "80F00000",
        "00880000 08 0102030405060708 00",
    ],
)
def test_commands_before_select_are_6985(issued: Issued, apdu: str) -> None:
    assert issued.h.sw(apdu) == 0x6985
    assert issued.h.sw(sign_apdu()) == 0x6985


@pytest.mark.parametrize("cla", [0x01, 0x04, 0x0C, 0x40, 0x84, 0xA0, 0xC0, 0xFF])
def test_unsupported_class_is_6e00(blank: CardHarness, cla: int) -> None:
    blank.sw(SELECT)
    assert blank.sw(bytes((cla, 0xCA, 0x00, 0x5A, 0x00))) == 0x6E00


@pytest.mark.parametrize(
    "apdu",
    [
        "80A40400 09 F0434954495A454E01 00",  # SELECT with the proprietary class
        "80CA005A00",  # GET DATA with the proprietary class
        "00540000 00",  # SIGN TRANSACTION with the ISO class
        "00460000 00",  # GENERATE KEY PAIR with the ISO class
        "00DA005A 01 30",  # PUT DATA with the ISO class
    ],
)
def test_instruction_with_the_wrong_class_is_6e00(blank: CardHarness, apdu: str) -> None:
    blank.sw(SELECT)
    assert blank.sw(apdu) == 0x6E00


@pytest.mark.parametrize("ins", [0x00, 0x0E, 0x70, 0x84, 0xB0, 0xD6, 0xE2, 0xFE])
@pytest.mark.parametrize("cla", [0x00, 0x80])
def test_unknown_instruction_is_6d00(blank: CardHarness, cla: int, ins: int) -> None:
    blank.sw(SELECT)
    assert blank.sw(bytes((cla, ins, 0, 0))) == 0x6D00


@pytest.mark.parametrize(
    "apdu",
    [
        "00CA005A 05 0102",  # short Lc says 5, 2 bytes follow
        "00CA005A 01 02 03 04",  # one byte too many for case 4S
        "00CA005A 00 00",  # truncated extended length
        "00CA005A 00 0002 01",  # extended Lc 2 with one data byte
        "00DA005A 00 0000 00",  # extended Lc 0
    ],
)
def test_inconsistent_lengths_are_6700(blank: CardHarness, apdu: str) -> None:
    blank.sw(SELECT)
    assert blank.sw(apdu) == 0x6700


def test_short_apdus_are_6700_in_process() -> None:
    # PC/SC refuses APDUs under 4 bytes before they reach a card, so only in process.
    card = VirtualCard()
    for raw in (b"", b"\x00", b"\x00\xa4", b"\x00\xa4\x04"):
        assert card.execute(raw) == b"\x67\x00"


# --- GET DATA and response chaining ---------------------------------------------------------


def test_read_card_data(issued: Issued) -> None:
    client = issued.h.client
    client.select()
    data = client.read_card_data()
    assert data.card_number == CARD_NUMBER
    assert data.holder_name == HOLDER
    assert data.citizen_ref == CITIZEN_REF
    assert (data.valid_from, data.valid_until) == (VALID_FROM, VALID_UNTIL)
    assert public_key_to_point(data.public_key) == public_key_to_point(issued.public_key)
    certificate = x509.load_der_x509_certificate(data.card_certificate)
    issuer_cert = x509.load_der_x509_certificate(data.issuer_certificate)
    assert issuer_cert == issued.issuer.certificate
    certificate.verify_directly_issued_by(issuer_cert)
    assert public_key_to_point(certificate.public_key()) == public_key_to_point(  # type: ignore[arg-type]
        issued.public_key
    )


def test_get_data_unknown_or_missing_object_is_6a88(blank: CardHarness) -> None:
    blank.sw(SELECT)
    assert blank.sw(get_data(0x1234)) == 0x6A88
    assert blank.sw(get_data(Tag.CARD_NUMBER)) == 0x6A88  # not written yet
    assert blank.sw(get_data(Tag.PUBLIC_KEY)) == 0x6A88  # no key pair yet
    assert blank.raw(get_data(Tag.ATC)) == bytes(4) + b"\x90\x00"


def test_get_data_with_a_data_field_is_6700(issued: Issued) -> None:
    issued.h.sw(SELECT)
    assert issued.h.sw("00CA005A 01 00 00") == 0x6700


def test_get_data_short_le_gets_6cxx_then_exact_read(issued: Issued) -> None:
    h = issued.h
    h.sw(SELECT)
    assert h.raw(get_data(Tag.CARD_NUMBER, "05")) == b"\x6c\x13"  # 19 bytes available
    assert h.raw(get_data(Tag.CARD_NUMBER, "13")) == CARD_NUMBER.encode() + b"\x90\x00"
    assert h.raw("00CA005A") == b"\x6c\x13"  # no Le at all
    # The terminal side (exchange) follows 6C xx by itself.
    response = h.reader.transmit(CommandAPDU(0x00, 0xCA, 0x00, 0x5A, ne=5))
    assert response.ok and response.data == CARD_NUMBER.encode()


def test_long_object_comes_with_61xx_and_get_response(issued: Issued) -> None:
    h = issued.h
    h.sw(SELECT)
    expected = issued.h.card.stored_object(Tag.CARD_CERTIFICATE)
    assert expected is not None and len(expected) > 256
    first = h.raw(get_data(Tag.CARD_CERTIFICATE))
    rest = len(expected) - 256
    assert first == expected[:256] + bytes((0x61, rest))
    assert h.raw(f"00C00000{rest:02X}") == expected[256:] + b"\x90\x00"
    assert h.sw("00C0000000") == 0x6985  # nothing left to fetch


def test_get_response_in_smaller_pieces(issued: Issued) -> None:
    h = issued.h
    h.sw(SELECT)
    expected = h.card.stored_object(Tag.CARD_CERTIFICATE)
    assert expected is not None
    collected = bytearray(h.raw(get_data(Tag.CARD_CERTIFICATE))[:-2])
    while True:
        response = h.raw("00C0000010")
        collected += response[:-2]
        if response[-2] != 0x61:
            assert response[-2:] == b"\x90\x00"
            break
    assert bytes(collected) == expected


def test_extended_le_reads_a_certificate_in_one_response(issued: Issued) -> None:
    h = issued.h
    h.sw(SELECT)
    expected = h.card.stored_object(Tag.CARD_CERTIFICATE)
    raw = h.raw(f"00CA{Tag.CARD_CERTIFICATE:04X} 00 0000")
    assert raw == expected + b"\x90\x00"


def test_get_response_errors(issued: Issued) -> None:
    h = issued.h
    h.sw(SELECT)
    assert h.sw("00C0000000") == 0x6985  # nothing pending
    assert h.raw(get_data(Tag.CARD_CERTIFICATE))[-2] == 0x61
    assert h.sw("00C0010000") == 0x6A86
    h.raw(get_data(Tag.CARD_CERTIFICATE))
    assert h.sw("00C00000") == 0x6700  # no Le
    h.raw(get_data(Tag.CARD_CERTIFICATE))
    assert h.sw("80C0000000") == 0x6E00
    # Any other command in between discards the pending data.
    h.raw(get_data(Tag.CARD_CERTIFICATE))
    assert h.sw(get_data(Tag.ATC)) == 0x9000
    assert h.sw("00C0000000") == 0x6985


# --- PIN ------------------------------------------------------------------------------------


def test_verify_pin_ok_and_status(issued: Issued) -> None:
    h = issued.h
    h.sw(SELECT)
    assert h.sw("00200081") == 0x63C3  # not verified yet, 3 tries
    assert h.sw(verify_apdu(PIN)) == 0x9000
    assert h.sw("00200081") == 0x9000
    assert h.card.pin_verified


def test_wrong_pin_counts_down_and_blocks(issued: Issued) -> None:
    h = issued.h
    h.sw(SELECT)
    assert h.sw(verify_apdu("000000")) == 0x63C2
    assert h.sw(verify_apdu("000000")) == 0x63C1
    assert h.sw("00200081") == 0x63C1  # status query spends no try
    assert h.sw(verify_apdu("000000")) == 0x63C0
    assert h.sw(verify_apdu(PIN)) == 0x6983  # blocked, even with the right PIN
    assert h.sw("00200081") == 0x6983
    assert h.card.pin_tries_left == 0


def test_right_pin_restores_the_counter(issued: Issued) -> None:
    h = issued.h
    h.sw(SELECT)
    assert h.sw(verify_apdu("999999")) == 0x63C2
    assert h.sw(verify_apdu(PIN)) == 0x9000
    assert h.card.pin_tries_left == 3


def test_wrong_pin_clears_verified_flag(issued: Issued) -> None:
    h = issued.h
    h.sw(SELECT)
    h.sw(verify_apdu(PIN))
    assert h.sw(verify_apdu("999999")) == 0x63C2
    assert not h.card.pin_verified


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("00200082 06 313233343536", 0x6A88),  # P2: PUK is not verifiable alone
        ("00200181 06 313233343536", 0x6A86),  # P1
        ("00200081 05 3132333435", 0x6700),  # 5 digits
        ("00200081 08 3132333435363738", 0x6700),  # 8 digits
        ("00200081 06 31323334353A", 0x6A80),  # not a digit
        ("00200081 06 FFFFFFFFFFFF", 0x6A80),  # padding is not a PIN
        ("0020FF81 01 00", 0x6700),  # reset-status form takes no data
    ],
)
def test_verify_errors_spend_no_try(issued: Issued, apdu: str, sw: int) -> None:
    h = issued.h
    h.sw(SELECT)
    assert h.sw(apdu) == sw
    assert h.card.pin_tries_left == 3


def test_verify_p1_ff_resets_verification(issued: Issued) -> None:
    h = issued.h
    h.sw(SELECT)
    h.sw(verify_apdu(PIN))
    assert h.sw("0020FF81") == 0x9000
    assert h.sw("00200081") == 0x63C3


def test_pin_session_ends_on_reset_and_reselect(issued: Issued) -> None:
    h = issued.h
    h.sw(SELECT)
    h.sw(verify_apdu(PIN))
    h.sw(SELECT)
    assert h.sw("00200081") == 0x63C3
    h.sw(verify_apdu(PIN))
    h.reader.reset()
    h.sw(SELECT)
    assert h.sw("00200081") == 0x63C3


def test_pin_commands_before_lock_are_6985(blank: CardHarness) -> None:
    blank.sw(SELECT)
    blank.sw("802E0000 0E" + (PIN + PUK).encode().hex())
    assert blank.sw(verify_apdu(PIN)) == 0x6985
    assert blank.sw("00240081 0C" + (PIN + "654321").encode().hex()) == 0x6985
    assert blank.sw("002C0081 0E" + (PUK + PIN).encode().hex()) == 0x6985


def test_change_pin(issued: Issued) -> None:
    h = issued.h
    client = h.client
    client.select()
    client.change_pin(PIN, "654321")
    assert client.pin_verified()  # proving the old PIN verifies
    client.select()
    with pytest.raises(VerificationFailedError) as failed:
        client.verify_pin(PIN)
    assert failed.value.tries_left == 2
    client.verify_pin("654321")
    assert h.card.pin_tries_left == 3


def test_change_pin_wrong_old_pin(issued: Issued) -> None:
    h = issued.h
    h.sw(SELECT)
    assert h.sw("00240081 0C" + ("000000" + "654321").encode().hex()) == 0x63C2
    assert h.sw(verify_apdu(PIN)) == 0x9000


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("00240181 0C" + "31" * 12, 0x6A86),
        ("00240083 0C" + "31" * 12, 0x6A88),
        ("00240081 0B" + "31" * 11, 0x6700),
        ("00240082 0C" + "31" * 12, 0x6700),  # PUK change carries 16 digits
        ("00240081 0C" + "31" * 11 + "41", 0x6A80),
    ],
)
def test_change_reference_data_errors(issued: Issued, apdu: str, sw: int) -> None:
    issued.h.sw(SELECT)
    assert issued.h.sw(apdu) == sw
    assert issued.h.card.pin_tries_left == 3


def test_change_puk(issued: Issued) -> None:
    h = issued.h
    client = h.client
    client.select()
    client.change_puk(PUK, "87654321")
    with pytest.raises(VerificationFailedError) as failed:
        client.unblock_pin(PUK, "111111")
    assert failed.value.tries_left == 9
    client.unblock_pin("87654321", "111111")
    client.verify_pin("111111")


def test_unblock_pin_with_puk_and_new_pin(issued: Issued) -> None:
    h = issued.h
    client = h.client
    client.select()
    for _ in range(3):
        with pytest.raises(VerificationFailedError):
            client.verify_pin("000000")
    with pytest.raises(AuthenticationBlockedError):
        client.verify_pin(PIN)
    client.unblock_pin(PUK, "246810")
    assert h.card.pin_tries_left == 3
    assert not client.pin_verified()  # unblocking does not verify
    client.verify_pin("246810")


def test_reset_retry_counter_keeping_the_pin(issued: Issued) -> None:
    h = issued.h
    h.sw(SELECT)
    h.sw(verify_apdu("000000"))
    h.sw(verify_apdu("000000"))
    assert h.sw("002C0181 08" + PUK.encode().hex()) == 0x9000
    assert h.card.pin_tries_left == 3
    assert h.sw(verify_apdu(PIN)) == 0x9000


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("002C0281 08" + "31" * 8, 0x6A86),
        ("002C0082 0E" + "31" * 14, 0x6A88),
        ("002C0081 08" + "31" * 8, 0x6700),  # P1 00 needs PUK and new PIN
        ("002C0181 0E" + "31" * 14, 0x6700),  # P1 01 takes the PUK only
        ("002C0181 08" + "31" * 7 + "20", 0x6A80),
    ],
)
def test_reset_retry_counter_errors(issued: Issued, apdu: str, sw: int) -> None:
    issued.h.sw(SELECT)
    assert issued.h.sw(apdu) == sw
    assert issued.h.card.puk_tries_left == 10


def test_ten_wrong_puks_terminate_the_card(issued: Issued) -> None:
    h = issued.h
    h.sw(SELECT)
    for left in range(9, -1, -1):
        assert h.sw("002C0181 08" + b"00000000".hex()) == 0x63C0 | left
    assert h.card.lifecycle.name == "TERMINATED"
    assert h.sw("002C0181 08" + PUK.encode().hex()) == 0x6983
    assert h.sw(verify_apdu(PIN)) == 0x6983
    assert h.sw("00200081") == 0x6983
    response = h.raw(SELECT)
    assert response[-2:] == b"\x62\x83"  # selected, but deactivated
    assert bytes.fromhex("80010F") in response  # FCI shows TERMINATED
    assert h.sw(sign_apdu()) == 0x6985
    # Public data stays readable, so a terminal can say which card this is.
    assert h.raw(get_data(Tag.CARD_NUMBER))[:-2] == CARD_NUMBER.encode()
    client = h.client
    assert client.select().name == "TERMINATED"


# --- SIGN TRANSACTION -----------------------------------------------------------------------


def test_sign_transaction_verifies_with_the_certificate_key(issued: Issued) -> None:
    client = issued.h.client
    client.select()
    certificate = x509.load_der_x509_certificate(client.read_object(Tag.CARD_CERTIFICATE))
    public_key = certificate.public_key()
    tx = client.sign_transaction(TERMINAL, UN, TS, 250)
    assert (tx.card_number, tx.atc, tx.amount_fen, tx.pin_verified) == (
        CARD_NUMBER,
        1,
        250,
        False,
    )
    tx.verify(public_key)  # type: ignore[arg-type]
    # The same check with nothing but cryptography and the documented message layout.
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    message = (
        b"citizen-card/transaction/v1\x00"
        + CARD_NUMBER.encode()
        + (1).to_bytes(4, "big")
        + bytes((len(TERMINAL),))
        + TERMINAL.encode()
        + UN
        + TS.to_bytes(8, "big")
        + (250).to_bytes(4, "big")
        + b"\x00"
    )
    der = encode_dss_signature(
        int.from_bytes(tx.signature[:32], "big"), int.from_bytes(tx.signature[32:], "big")
    )
    pem = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    loaded = serialization.load_pem_public_key(pem)
    assert isinstance(loaded, ec.EllipticCurvePublicKey)
    loaded.verify(der, message, ec.ECDSA(hashes.SHA256()))


def test_signed_transaction_is_bound_to_every_field(issued: Issued) -> None:
    client = issued.h.client
    client.select()
    tx = client.sign_transaction(TERMINAL, UN, TS, 200)
    tx.verify(issued.public_key)
    for change in (
        {"atc": 2},
        {"amount_fen": 201},
        {"terminal_id": "gate-0043"},
        {"timestamp": TS + 1},
        {"unpredictable_number": bytes(8)},
        {"pin_verified": True},
        {"card_number": "6200000000000000018"},
    ):
        forged = SignedTransaction(**{**tx.__dict__, **change})
        with pytest.raises(SignatureError):
            forged.verify(issued.public_key)


def test_atc_increments_and_pin_flag_is_signed(issued: Issued) -> None:
    client = issued.h.client
    client.select()
    first = client.sign_transaction(TERMINAL, UN, TS, 1)
    client.verify_pin(PIN)
    second = client.sign_transaction(TERMINAL, UN, TS, 1)
    client.select()
    third = client.sign_transaction(TERMINAL, UN, TS, 1)
    assert [t.atc for t in (first, second, third)] == [1, 2, 3]
    assert [t.pin_verified for t in (first, second, third)] == [False, True, False]
    for t in (first, second, third):
        t.verify(issued.public_key)
    assert issued.h.card.atc == 3


def test_sign_with_small_le_keeps_the_signature_for_get_response(issued: Issued) -> None:
    h = issued.h
    h.sw(SELECT)
    first = h.raw(sign_apdu(ne=4))
    assert first[:4] == (1).to_bytes(4, "big") and first[-2:] == bytes((0x61, 65))
    rest = h.raw("00C0000041")
    atc, flag, signature = decode_sign_response(first[:4] + rest[:-2])
    assert rest[-2:] == b"\x90\x00" and atc == 1 and flag is False
    message = transaction_message(CARD_NUMBER, 1, TERMINAL, UN, TS, 200, False)
    verify_signature(issued.public_key, message, signature)
    assert h.card.atc == 1  # no second increment


def test_sign_without_le_answers_61xx(issued: Issued) -> None:
    h = issued.h
    h.sw(SELECT)
    assert h.raw(sign_apdu(ne=0)) == b"\x61\x45"
    assert len(h.raw("00C0000045")) == 69 + 2


@pytest.mark.parametrize(
    ("data", "sw"),
    [
        ("", 0x6700),
        ("09" + b"gate-0042".hex() + "00" * 19, 0x6700),  # one byte short
        ("09" + b"gate-0042".hex() + "00" * 21, 0x6700),  # one byte too many
        ("00" + "00" * 20, 0x6A80),  # empty terminal id
        ("03" + b"a b".hex() + "00" * 20, 0x6A80),  # space in the terminal id
        ("02" + "C3A9" + "00" * 20, 0x6A80),  # not ASCII
        ("41" + "61" * 65 + "00" * 20, 0x6A80),  # 65 characters
    ],
)
def test_sign_transaction_bad_data(issued: Issued, data: str, sw: int) -> None:
    h = issued.h
    h.sw(SELECT)
    apdu = CommandAPDU(0x80, 0x54, 0, 0, bytes.fromhex(data), 256)
    assert h.sw(apdu) == sw
    assert h.card.atc == 0


def test_sign_transaction_bad_p1p2(issued: Issued) -> None:
    h = issued.h
    h.sw(SELECT)
    good = sign_apdu()
    assert h.sw(CommandAPDU(0x80, 0x54, 1, 0, good.data, 256)) == 0x6A86
    assert h.sw(CommandAPDU(0x80, 0x54, 0, 1, good.data, 256)) == 0x6A86


def test_sign_transaction_before_lock_is_6985(blank: CardHarness) -> None:
    blank.sw(SELECT)
    assert blank.sw(sign_apdu()) == 0x6985
    bad_content = bytes.fromhex("03" + b"a b".hex() + "00" * 20)
    # The life cycle is checked before the content.
    assert blank.sw(CommandAPDU(0x80, 0x54, 0, 0, bad_content, 256)) == 0x6985


def test_exhausted_atc_stops_signing(issued: Issued, card_file: object) -> None:
    h = issued.h
    path = h.card.path
    assert path is not None
    state = json.loads(path.read_text())
    state["atc"] = ATC_MAX - 1
    path.write_text(json.dumps(state))
    h.insert(VirtualCard.load(path))
    client = h.client
    client.select()
    assert client.sign_transaction(TERMINAL, UN, TS, 1).atc == ATC_MAX
    with pytest.raises(ConditionsNotSatisfiedError):
        client.sign_transaction(TERMINAL, UN, TS, 1)
    assert h.card.atc == ATC_MAX


def test_atc_is_on_disk_before_the_signature(issued: Issued) -> None:
    h = issued.h
    path = h.card.path
    assert path is not None
    client = h.client
    client.select()
    client.sign_transaction(TERMINAL, UN, TS, 1)
    assert json.loads(path.read_text())["atc"] == 1
    # Make the next write fail: the card must answer 65 81 and release no signature.
    shutil.rmtree(path.parent)
    response = h.raw(sign_apdu())
    assert response == b"\x65\x81"


# --- INTERNAL AUTHENTICATE ------------------------------------------------------------------


def test_internal_authenticate_needs_the_pin(issued: Issued) -> None:
    client = issued.h.client
    client.select()
    challenge = bytes(range(32))
    with pytest.raises(SecurityStatusNotSatisfiedError):
        client.internal_authenticate(challenge)
    client.verify_pin(PIN)
    signature = client.internal_authenticate(challenge)
    key = public_key_from_point(client.read_object(Tag.PUBLIC_KEY))
    verify_auth_signature(key, CARD_NUMBER, challenge, signature)
    verify_signature(key, auth_message(CARD_NUMBER, challenge), signature)


def test_auth_signature_never_passes_as_a_transaction(issued: Issued) -> None:
    """Domain separation: even a challenge chosen to look like a transaction fails."""
    client = issued.h.client
    client.select()
    client.verify_pin(PIN)
    tail = (1).to_bytes(4, "big") + encode_terminal_data(TERMINAL, UN, TS, 200) + b"\x00"
    signature = client.internal_authenticate(tail)
    forged = SignedTransaction(CARD_NUMBER, 1, TERMINAL, UN, TS, 200, False, signature)
    with pytest.raises(SignatureError):
        forged.verify(issued.public_key)


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("00880100 08 0102030405060708 00", 0x6A86),
        ("00880001 08 0102030405060708 00", 0x6A86),
        ("00880000 07 01020304050607 00", 0x6700),
        ("00880000 81" + "00" * 129 + "00", 0x6700),
        ("00880000", 0x6700),
    ],
)
def test_internal_authenticate_errors(issued: Issued, apdu: str, sw: int) -> None:
    h = issued.h
    h.sw(SELECT)
    h.sw(verify_apdu(PIN))
    assert h.sw(apdu) == sw


def test_internal_authenticate_before_lock_is_6985(blank: CardHarness) -> None:
    blank.sw(SELECT)
    assert blank.sw("00880000 08 0102030405060708 00") == 0x6985


# --- personalization ------------------------------------------------------------------------


def test_generate_key_pair(blank: CardHarness) -> None:
    h = blank
    h.sw(SELECT)
    response = h.raw("80460000 00")
    assert response[-2:] == b"\x90\x00" and len(response) == 67 and response[0] == 0x04
    assert h.raw(get_data(Tag.PUBLIC_KEY))[:-2] == response[:-2]
    assert h.sw("80460100 00") == 0x6A86
    assert h.sw("80460000 01 00 00") == 0x6700


@pytest.mark.parametrize(
    ("tag", "value", "sw"),
    [
        (Tag.CARD_NUMBER, b"6200000000000012345", 0x6A80),  # Luhn digit wrong
        (Tag.CARD_NUMBER, b"620000000000001234", 0x6700),  # 18 digits
        (Tag.CARD_NUMBER, b"62000000000000123 4", 0x6A80),
        (Tag.HOLDER_NAME, b"", 0x6700),
        (Tag.HOLDER_NAME, b"x" * 129, 0x6700),
        (Tag.HOLDER_NAME, b"\xff\xfe", 0x6A80),  # not UTF-8
        (Tag.HOLDER_NAME, b"Name\n", 0x6A80),  # control character
        (Tag.CITIZEN_REF, b"r" * 65, 0x6700),
        (Tag.VALID_FROM, b"20250230", 0x6A80),  # 30 February
        (Tag.VALID_UNTIL, b"2030-1-1", 0x6A80),
        (Tag.VALID_UNTIL, b"203001011", 0x6700),
        (Tag.CARD_CERTIFICATE, b"\x04\x01\x00", 0x6A80),  # not a DER SEQUENCE
        (Tag.CARD_CERTIFICATE, b"\x30\x05\x00", 0x6A80),  # length does not match
        (Tag.ISSUER_CERTIFICATE, b"\x30\x82\x08\x01" + bytes(2049), 0x6700),  # > 2048
        (Tag.PUBLIC_KEY, b"\x04" * 65, 0x6A88),  # read-only
        (Tag.ATC, bytes(4), 0x6A88),
        (0x1234, b"x", 0x6A88),
    ],
)
def test_put_data_validation(blank: CardHarness, tag: int, value: bytes, sw: int) -> None:
    blank.sw(SELECT)
    assert blank.sw(CommandAPDU(0x80, 0xDA, tag >> 8, tag & 0xFF, value)) == sw


def test_put_data_with_command_chaining_and_extended_length(blank: CardHarness) -> None:
    h = blank
    h.sw(SELECT)
    big = b"\x30\x82\x03\xe4" + bytes(range(256)) * 3 + bytes(228)
    assert len(big) == 1000
    h.client.put_data(Tag.CARD_CERTIFICATE, big)  # chained: 255 + 255 + 255 + 235
    assert h.card.stored_object(Tag.CARD_CERTIFICATE) == big
    other = big[:-1] + b"\x01"
    h.client.put_data(Tag.ISSUER_CERTIFICATE, other, extended=True)
    assert h.card.stored_object(Tag.ISSUER_CERTIFICATE) == other
    assert h.reader.transmit(CommandAPDU(0x00, 0xCA, 0xDF, 0x11, ne=65536)).data == other


def test_command_chaining_errors(blank: CardHarness) -> None:
    h = blank
    h.sw(SELECT)
    # Chaining is only for PUT DATA.
    assert h.sw("90540000 01 00") == 0x6884
    assert h.sw("10CA005A 00") == 0x6884
    # A chain interrupted by another command.
    assert h.sw("90DADF10 02 3082") == 0x9000
    assert h.sw(get_data(Tag.ATC)) == 0x6883
    # The chain was dropped: a final block alone is now a complete (invalid) object.
    assert h.sw("80DADF10 02 0000") == 0x6A80
    # A chain switching tags.
    assert h.sw("90DADF10 02 3082") == 0x9000
    assert h.sw("80DADF11 02 0000") == 0x6883
    # Too much chained data.
    for _ in range(16):
        assert h.sw("90DADF10 FF" + "00" * 255) == 0x9000
    assert h.sw("90DADF10 FF" + "00" * 255) == 0x6A84
    # Chained PUT DATA is checked from its first block.
    assert h.sw("90DA1234 01 00") == 0x6A88


def test_set_pin_puk_validation(blank: CardHarness) -> None:
    h = blank
    h.sw(SELECT)
    assert h.sw("802E0000 0D" + "31" * 13) == 0x6700
    assert h.sw("802E0100 0E" + "31" * 14) == 0x6A86
    assert h.sw("802E0000 0E" + "31" * 13 + "78") == 0x6A80
    assert h.sw("802E0000 0E" + (PIN + PUK).encode().hex()) == 0x9000
    assert h.card.pin_tries_left == 3 and h.card.puk_tries_left == 10


def test_lock_needs_a_complete_card(blank: CardHarness, issuer: object) -> None:
    h = blank
    client = h.client
    client.select()
    assert h.sw("80F00000") == 0x6985  # nothing written
    client.generate_key_pair()
    client.write_data(
        card_number=CARD_NUMBER,
        holder_name=HOLDER,
        citizen_ref=CITIZEN_REF,
        valid_from=VALID_UNTIL,  # reversed validity
        valid_until=VALID_FROM,
        card_certificate=b"\x30\x00",
        issuer_certificate=b"\x30\x00",
    )
    assert h.sw("80F00000") == 0x6985  # PIN missing
    client.set_pin_puk(PIN, PUK)
    assert h.sw("80F00000") == 0x6985  # validity reversed
    client.write_data(valid_from=VALID_FROM, valid_until=VALID_UNTIL)
    assert h.sw("80F00100") == 0x6A86
    assert h.sw("80F00000 01 00") == 0x6700
    assert h.sw("80F00000") == 0x9000
    assert h.card.lifecycle.name == "OPERATIONAL"


def test_personalization_is_closed_after_lock(issued: Issued) -> None:
    h = issued.h
    h.sw(SELECT)
    key_before = h.raw(get_data(Tag.PUBLIC_KEY))
    assert h.sw("80460000 00") == 0x6985
    assert h.sw(CommandAPDU(0x80, 0xDA, 0x00, 0x5A, b"6200000000000000018")) == 0x6985
    assert h.sw("90DADF10 02 3082") == 0x6985
    assert h.sw("802E0000 0E" + ("000000" + "00000000").encode().hex()) == 0x6985
    assert h.sw("80F00000") == 0x6985
    assert h.raw(get_data(Tag.PUBLIC_KEY)) == key_before
    assert h.raw(get_data(Tag.CARD_NUMBER))[:-2] == CARD_NUMBER.encode()
    assert h.sw(verify_apdu(PIN)) == 0x9000  # the old PIN still holds
    assert h.card.lifecycle.name == "OPERATIONAL"


def test_status_object(issued: Issued) -> None:
    client = issued.h.client
    client.select()
    status = client.status()
    assert status.to_json() == {
        "lifecycle": "operational",
        "pin_tries_left": 3,
        "puk_tries_left": 10,
        "pin_verified": False,
        "pin_set": True,
        "key_generated": True,
        "atc": 0,
    }
    client.verify_pin(PIN)
    client.sign_transaction(TERMINAL, UN, TS, 1)
    assert client.status().pin_verified and client.status().atc == 1


# --- persistence across a reload ------------------------------------------------------------


def test_counters_survive_a_reload(issued: Issued) -> None:
    h = issued.h
    path = h.card.path
    assert path is not None
    h.sw(SELECT)
    assert h.sw(verify_apdu("000000")) == 0x63C2
    assert h.sw("002C0181 08" + b"00000000".hex()) == 0x63C9
    client = h.client
    client.sign_transaction(TERMINAL, UN, TS, 1)
    client.sign_transaction(TERMINAL, UN, TS, 1)

    h.insert(VirtualCard.load(path))  # "restart": a new process loads the file
    h.sw(SELECT)
    assert h.sw("00200081") == 0x63C2
    assert h.sw(verify_apdu("000000")) == 0x63C1
    client = h.client
    assert client.sign_transaction(TERMINAL, UN, TS, 1).atc == 3
    assert client.status().puk_tries_left == 9

    h.insert(VirtualCard.load(path))
    h.sw(SELECT)
    assert h.sw(verify_apdu("000000")) == 0x63C0
    h.insert(VirtualCard.load(path))
    h.sw(SELECT)
    assert h.sw(verify_apdu(PIN)) == 0x6983  # still blocked after the reload
    tx = h.client.sign_transaction(TERMINAL, UN, TS, 1)
    assert tx.atc == 4
    tx.verify(issued.public_key)  # same key after reloads


def test_pin_try_is_spent_on_disk_before_the_comparison(issued: Issued) -> None:
    h = issued.h
    path = h.card.path
    assert path is not None
    h.sw(SELECT)
    shutil.rmtree(path.parent)
    # The decrement cannot be written: the card refuses to compare at all.
    assert h.raw(verify_apdu(PIN)) == b"\x65\x81"
    assert not h.card.pin_verified


def test_pin_verified_is_not_persisted(issued: Issued) -> None:
    h = issued.h
    path = h.card.path
    assert path is not None
    h.sw(SELECT)
    h.sw(verify_apdu(PIN))
    h.insert(VirtualCard.load(path))
    h.sw(SELECT)
    assert h.sw("00200081") == 0x63C3


def test_blocked_pin_via_client_errors(issued: Issued) -> None:
    client = issued.h.client
    client.select()
    with pytest.raises(VerificationFailedError) as err:
        client.verify_pin("111111")
    assert err.value.tries_left == 2 and err.value.sw == 0x63C2
    with pytest.raises(ValueError):
        client.verify_pin("12345")
