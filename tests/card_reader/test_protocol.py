"""The protocol module: Luhn, field formats, signed-message layouts and their JSON form."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from card_reader.errors import CardResponseError
from card_reader.errors import SignatureError
from card_reader.errors import TransactionFormatError
from card_reader.protocol import AID
from card_reader.protocol import ATR
from card_reader.protocol import INTERNAL_AUTH_DOMAIN
from card_reader.protocol import TRANSACTION_DOMAIN
from card_reader.protocol import SignedTransaction
from card_reader.protocol import auth_message
from card_reader.protocol import decode_date
from card_reader.protocol import decode_sign_response
from card_reader.protocol import decode_terminal_data
from card_reader.protocol import encode_terminal_data
from card_reader.protocol import is_valid_card_number
from card_reader.protocol import is_valid_terminal_id
from card_reader.protocol import luhn_check_digit
from card_reader.protocol import make_card_number
from card_reader.protocol import public_key_from_point
from card_reader.protocol import public_key_to_point
from card_reader.protocol import signature_from_der
from card_reader.protocol import signature_to_der
from card_reader.protocol import transaction_message
from card_reader.protocol import verify_signature

CARD = "6200000000000012344"


def test_aid_and_atr() -> None:
    assert AID == b"\xf0CITIZEN\x01"
    tck = 0
    for b in ATR[1:-1]:
        tck ^= b
    assert ATR[-1] == tck and ATR[4:-1] == b"CITIZEN1"


@pytest.mark.parametrize(
    ("payload", "digit"),
    [("7992739871", "3"), ("4111111111111111"[:-1], "1"), ("0", "0"), ("18", "2")],
)
def test_luhn_known_values(payload: str, digit: str) -> None:
    assert luhn_check_digit(payload) == digit


@given(st.text(alphabet="0123456789", min_size=18, max_size=18))
def test_every_generated_number_is_valid_and_every_single_digit_change_is_caught(
    payload: str,
) -> None:
    number = make_card_number(payload)
    assert is_valid_card_number(number)
    for position in range(19):
        for digit in "0123456789":
            if digit != number[position]:
                changed = number[:position] + digit + number[position + 1 :]
                assert not is_valid_card_number(changed)


@pytest.mark.parametrize(
    "number", ["620000000000001234", "62000000000000123440", "620000000000001234a", "６" * 19, ""]
)
def test_invalid_card_numbers(number: str) -> None:
    assert not is_valid_card_number(number)


def test_luhn_and_make_reject_bad_input() -> None:
    with pytest.raises(ValueError):
        luhn_check_digit("")
    with pytest.raises(ValueError):
        luhn_check_digit("12a")
    with pytest.raises(ValueError):
        make_card_number("123")


def test_dates_and_terminal_ids() -> None:
    assert decode_date(b"20240229").isoformat() == "2024-02-29"
    for bad in (b"20230229", b"2024022", b"2024-2-9"):
        with pytest.raises(ValueError):
            decode_date(bad)
    assert is_valid_terminal_id("gate-0042")
    assert is_valid_terminal_id("x" * 64)
    for bad in ("", "x" * 65, "gate 1", "gaté", "tab\t"):
        assert not is_valid_terminal_id(bad)


def test_transaction_message_layout_byte_by_byte() -> None:
    message = transaction_message(
        CARD, 0x01020304, "gate-1", bytes.fromhex("0011223344556677"), 0x65, 250, True
    )
    expected = bytes.fromhex(
        "636974697a656e2d636172642f7472616e73616374696f6e2f763100"  # domain, NUL-terminated
        "36323030303030303030303030303132333434"  # card number, ASCII
        "01020304"  # ATC
        "06"
        "676174652d31"  # terminal id length, terminal id
        "0011223344556677"  # unpredictable number
        "0000000000000065"  # timestamp
        "000000fa"  # amount in fen
        "01"  # PIN verified
    )
    assert message == expected
    assert message.startswith(TRANSACTION_DOMAIN) and len(TRANSACTION_DOMAIN) == 28


def test_auth_message_layout_and_domain_separation() -> None:
    challenge = bytes(range(16))
    message = auth_message(CARD, challenge)
    assert message == INTERNAL_AUTH_DOMAIN + CARD.encode() + challenge
    assert not message.startswith(TRANSACTION_DOMAIN)
    assert not TRANSACTION_DOMAIN.startswith(INTERNAL_AUTH_DOMAIN)
    with pytest.raises(TransactionFormatError):
        auth_message(CARD, bytes(7))
    with pytest.raises(TransactionFormatError):
        auth_message("1234", bytes(8))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"card_number": "6200000000000012345"},
        {"atc": 0},
        {"atc": 2**32},
        {"atc": True},
        {"terminal_id": "a b"},
        {"unpredictable_number": bytes(7)},
        {"timestamp": -1},
        {"timestamp": 1.5},
        {"amount_fen": 2**32},
        {"pin_verified": 1},
    ],
)
def test_transaction_message_rejects_bad_fields(kwargs: dict[str, object]) -> None:
    fields: dict[str, object] = {
        "card_number": CARD,
        "atc": 1,
        "terminal_id": "gate-1",
        "unpredictable_number": bytes(8),
        "timestamp": 1,
        "amount_fen": 1,
        "pin_verified": False,
        **kwargs,
    }
    with pytest.raises(TransactionFormatError):
        transaction_message(**fields)  # type: ignore[arg-type]


def test_terminal_data_round_trip_and_errors() -> None:
    data = encode_terminal_data("gate-1", bytes(8), 1_767_225_600, 200)
    assert decode_terminal_data(data) == ("gate-1", bytes(8), 1_767_225_600, 200)
    with pytest.raises(ValueError):
        decode_terminal_data(data[:-1])
    with pytest.raises(TransactionFormatError):
        decode_terminal_data(b"\x01\xff" + bytes(20))


def test_sign_response_decoding() -> None:
    assert decode_sign_response(b"\x00\x00\x00\x07\x01" + bytes(64)) == (7, True, bytes(64))
    for bad in (bytes(68), b"\x00\x00\x00\x07\x02" + bytes(64)):
        with pytest.raises(CardResponseError):
            decode_sign_response(bad)


def _signed(key: ec.EllipticCurvePrivateKey, **changes: object) -> SignedTransaction:
    fields: dict[str, object] = {
        "card_number": CARD,
        "atc": 42,
        "terminal_id": "gate-7",
        "unpredictable_number": bytes.fromhex("0102030405060708"),
        "timestamp": 1_767_225_600,
        "amount_fen": 300,
        "pin_verified": False,
        **changes,
    }
    message = transaction_message(**fields)  # type: ignore[arg-type]
    signature = signature_from_der(key.sign(message, ec.ECDSA(hashes.SHA256())))
    return SignedTransaction(signature=signature, **fields)  # type: ignore[arg-type]


def test_signed_transaction_json_round_trip() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    tx = _signed(key)
    obj = tx.to_json()
    assert obj == {
        "card_number": CARD,
        "atc": 42,
        "terminal_id": "gate-7",
        "unpredictable_number": "0102030405060708",
        "timestamp": 1_767_225_600,
        "amount_fen": 300,
        "pin_verified": False,
        "signature": base64.urlsafe_b64encode(tx.signature).rstrip(b"=").decode(),
    }
    assert len(obj["signature"]) == 86 and "=" not in obj["signature"]
    again = SignedTransaction.from_json(obj)
    assert again == tx
    again.verify(key.public_key())
    assert again.is_valid(key.public_key())
    assert not again.is_valid(ec.generate_private_key(ec.SECP256R1()).public_key())


@pytest.mark.parametrize(
    "change",
    [
        {"signature": "not base64!"},
        {"signature": "AAAA"},  # wrong length
        {"signature": 5},
        {"unpredictable_number": "0102"},
        {"unpredictable_number": "zz02030405060708"},
        {"atc": "42"},
        {"pin_verified": "false"},
        {"amount_fen": 3.0},
        {"extra": 1},
    ],
)
def test_signed_transaction_json_validation(change: dict[str, object]) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    obj = {**_signed(key).to_json(), **change}
    with pytest.raises(TransactionFormatError):
        SignedTransaction.from_json(obj)


def test_signed_transaction_json_missing_field() -> None:
    obj = _signed(ec.generate_private_key(ec.SECP256R1())).to_json()
    del obj["atc"]
    with pytest.raises(TransactionFormatError, match="missing"):
        SignedTransaction.from_json(obj)
    with pytest.raises(TransactionFormatError):
        SignedTransaction.from_json([])  # type: ignore[arg-type]


def test_signature_helpers() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.sign(b"m", ec.ECDSA(hashes.SHA256()))
    raw = signature_from_der(der)
    assert len(raw) == 64 and signature_to_der(raw) == der
    verify_signature(key.public_key(), b"m", raw)
    with pytest.raises(SignatureError):
        verify_signature(key.public_key(), b"n", raw)
    with pytest.raises(SignatureError):
        signature_to_der(raw[:63])
    other_curve = ec.generate_private_key(ec.SECP384R1()).public_key()
    with pytest.raises(SignatureError):
        verify_signature(other_curve, b"m", raw)


def test_public_key_points() -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    point = public_key_to_point(key)
    assert len(point) == 65 and point[0] == 4
    assert public_key_to_point(public_key_from_point(point)) == point
    with pytest.raises(CardResponseError):
        public_key_from_point(point[:-1])
    with pytest.raises(CardResponseError):
        public_key_from_point(b"\x04" + bytes(64))  # not on the curve
