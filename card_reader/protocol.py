"""The citizen-card application protocol: identifiers, field formats and signed messages.

This is the single place that defines what the card signs. The server imports
:func:`transaction_message`, :class:`SignedTransaction` and the Luhn helpers from here to
verify taps and assign card numbers; ``docs/card-protocol.md`` describes the same layouts
byte by byte.

Signatures are ECDSA P-256 with SHA-256, encoded as raw ``r || s`` (32 + 32 bytes,
big-endian): fixed length on the card, and the same form JOSE's ES256 uses.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from enum import IntEnum
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.hazmat.primitives.serialization import PublicFormat

from card_reader.errors import CardResponseError
from card_reader.errors import SignatureError
from card_reader.errors import TransactionFormatError

#: Application identifier: proprietary RID range F0, then ASCII "CITIZEN", then version 01.
AID = bytes.fromhex("F0434954495A454E01")

#: Answer to reset of the virtual card: T=1, historical bytes ASCII "CITIZEN1", TCK.
ATR = bytes.fromhex("3B888001434954495A454E317E")

CLA_ISO = 0x00
CLA_PROPRIETARY = 0x80
#: ISO 7816-4 command chaining bit ("more commands of this chain follow").
CLA_CHAINING_BIT = 0x10


class Ins(IntEnum):
    """Instruction bytes. ISO codes with CLA 00, proprietary ones with CLA 80."""

    SELECT = 0xA4
    VERIFY = 0x20
    CHANGE_REFERENCE_DATA = 0x24
    RESET_RETRY_COUNTER = 0x2C
    INTERNAL_AUTHENTICATE = 0x88
    GET_DATA = 0xCA
    GET_RESPONSE = 0xC0
    # Proprietary (CLA 80)
    GENERATE_KEY_PAIR = 0x46
    PUT_DATA = 0xDA
    SET_PIN_PUK = 0x2E
    LOCK = 0xF0
    SIGN_TRANSACTION = 0x54


class Tag(IntEnum):
    """Data objects, addressed by GET DATA / PUT DATA in P1-P2."""

    CARD_NUMBER = 0x005A
    HOLDER_NAME = 0x5F20
    VALID_FROM = 0x5F25
    VALID_UNTIL = 0x5F24
    CITIZEN_REF = 0xDF01
    CARD_CERTIFICATE = 0xDF10
    ISSUER_CERTIFICATE = 0xDF11
    PUBLIC_KEY = 0xDF20
    ATC = 0x9F36
    STATUS = 0xDF40


#: Objects written at personalization (PUT DATA); every one is required before LOCK.
WRITABLE_TAGS = (
    Tag.CARD_NUMBER,
    Tag.HOLDER_NAME,
    Tag.VALID_FROM,
    Tag.VALID_UNTIL,
    Tag.CITIZEN_REF,
    Tag.CARD_CERTIFICATE,
    Tag.ISSUER_CERTIFICATE,
)


class Lifecycle(IntEnum):
    """Application life-cycle states; they only ever move forward."""

    PERSONALIZATION = 0x01
    OPERATIONAL = 0x07
    TERMINATED = 0x0F


PIN_REF = 0x81
PUK_REF = 0x82
PIN_LENGTH = 6
PUK_LENGTH = 8
PIN_MAX_TRIES = 3
PUK_MAX_TRIES = 10

CARD_NUMBER_LENGTH = 19
HOLDER_NAME_MAX = 128
CITIZEN_REF_MAX = 64
CERTIFICATE_MAX = 2048
TERMINAL_ID_MAX = 64
UN_LENGTH = 8
CHALLENGE_MIN = 8
CHALLENGE_MAX = 128
SIGNATURE_LENGTH = 64
PUBLIC_POINT_LENGTH = 65
ATC_MAX = 0xFFFFFFFF
AMOUNT_MAX = 0xFFFFFFFF
TIMESTAMP_MAX = 0xFFFFFFFFFFFFFFFF

#: Domain-separation prefixes: a challenge signature can never verify as a transaction.
TRANSACTION_DOMAIN = b"citizen-card/transaction/v1\x00"
INTERNAL_AUTH_DOMAIN = b"citizen-card/internal-auth/v1\x00"

_TERMINAL_ID_RE = re.compile(rf"[\x21-\x7e]{{1,{TERMINAL_ID_MAX}}}")


# --- Card numbers ---------------------------------------------------------------------------


def luhn_check_digit(payload: str) -> str:
    """Return the Luhn check digit for a string of decimal digits (without its check digit)."""
    if not payload or not payload.isascii() or not payload.isdigit():
        raise ValueError("Luhn payload must be a non-empty string of ASCII digits")
    total = 0
    # Double every second digit starting from the rightmost payload digit.
    for position, char in enumerate(reversed(payload)):
        digit = int(char)
        if position % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return str((10 - total % 10) % 10)


def is_valid_card_number(number: str) -> bool:
    """True for exactly 19 ASCII digits whose last digit is the Luhn check digit."""
    if len(number) != CARD_NUMBER_LENGTH or not number.isascii() or not number.isdigit():
        return False
    return luhn_check_digit(number[:-1]) == number[-1]


def make_card_number(payload: str) -> str:
    """Append the Luhn check digit to an 18-digit payload, giving a 19-digit card number."""
    if len(payload) != CARD_NUMBER_LENGTH - 1:
        raise ValueError(f"card number payload must have {CARD_NUMBER_LENGTH - 1} digits")
    return payload + luhn_check_digit(payload)


# --- Field formats --------------------------------------------------------------------------


def is_valid_pin(pin: str) -> bool:
    """True for a PIN of exactly 6 ASCII digits."""
    return len(pin) == PIN_LENGTH and pin.isascii() and pin.isdigit()


def is_valid_puk(puk: str) -> bool:
    """True for a PUK of exactly 8 ASCII digits."""
    return len(puk) == PUK_LENGTH and puk.isascii() and puk.isdigit()


def encode_date(value: date) -> bytes:
    """Encode a validity date as 8 ASCII digits ``YYYYMMDD``."""
    return value.strftime("%Y%m%d").encode("ascii")


def decode_date(raw: bytes) -> date:
    """Decode ``YYYYMMDD``; raise ``ValueError`` if it is not a real calendar date."""
    if len(raw) != 8 or not raw.isdigit():
        raise ValueError("a date is 8 ASCII digits YYYYMMDD")
    return date(int(raw[0:4]), int(raw[4:6]), int(raw[6:8]))


def is_valid_terminal_id(terminal_id: str) -> bool:
    """True for 1..64 printable ASCII characters without spaces."""
    return _TERMINAL_ID_RE.fullmatch(terminal_id) is not None


# --- Keys and signatures --------------------------------------------------------------------


def public_key_from_point(point: bytes) -> ec.EllipticCurvePublicKey:
    """Load a P-256 public key from its 65-byte uncompressed point ``04 || X || Y``."""
    if len(point) != PUBLIC_POINT_LENGTH or point[0] != 0x04:
        raise CardResponseError("public key must be a 65-byte uncompressed P-256 point")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError as exc:
        raise CardResponseError(f"invalid P-256 point: {exc}") from exc


def public_key_to_point(key: ec.EllipticCurvePublicKey) -> bytes:
    """Encode a P-256 public key as its 65-byte uncompressed point."""
    return key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def signature_to_der(raw: bytes) -> bytes:
    """Convert a raw ``r || s`` signature to the DER form ``cryptography`` verifies."""
    if len(raw) != SIGNATURE_LENGTH:
        raise SignatureError(f"a P-256 signature is {SIGNATURE_LENGTH} bytes, got {len(raw)}")
    return encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))


def signature_from_der(der: bytes) -> bytes:
    """Convert a DER ECDSA signature to raw ``r || s`` (32 + 32 bytes)."""
    r, s = decode_dss_signature(der)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def verify_signature(public_key: ec.EllipticCurvePublicKey, message: bytes, raw: bytes) -> None:
    """Verify a raw ECDSA P-256/SHA-256 signature; raise :class:`SignatureError` if invalid."""
    if not isinstance(public_key.curve, ec.SECP256R1):
        raise SignatureError("card keys are P-256")
    try:
        public_key.verify(signature_to_der(raw), message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise SignatureError("signature does not verify") from exc


# --- Internal authenticate ------------------------------------------------------------------


def auth_message(card_number: str, challenge: bytes) -> bytes:
    """The message INTERNAL AUTHENTICATE signs: domain || card number || challenge."""
    if not is_valid_card_number(card_number):
        raise TransactionFormatError("card number must be 19 digits with a Luhn check digit")
    if not CHALLENGE_MIN <= len(challenge) <= CHALLENGE_MAX:
        raise TransactionFormatError(
            f"challenge must be {CHALLENGE_MIN}..{CHALLENGE_MAX} bytes, got {len(challenge)}"
        )
    return INTERNAL_AUTH_DOMAIN + card_number.encode("ascii") + challenge


def verify_auth_signature(
    public_key: ec.EllipticCurvePublicKey, card_number: str, challenge: bytes, signature: bytes
) -> None:
    """Verify an INTERNAL AUTHENTICATE signature; raise :class:`SignatureError` if invalid."""
    verify_signature(public_key, auth_message(card_number, challenge), signature)


# --- Transactions ---------------------------------------------------------------------------


def _check_terminal_data(
    terminal_id: str, unpredictable_number: bytes, timestamp: int, amount_fen: int
) -> None:
    if not isinstance(terminal_id, str) or not is_valid_terminal_id(terminal_id):
        raise TransactionFormatError(
            f"terminal_id must be 1..{TERMINAL_ID_MAX} printable ASCII characters, no spaces"
        )
    if not isinstance(unpredictable_number, bytes) or len(unpredictable_number) != UN_LENGTH:
        raise TransactionFormatError(f"unpredictable_number must be {UN_LENGTH} bytes")
    if type(timestamp) is not int or not 0 <= timestamp <= TIMESTAMP_MAX:
        raise TransactionFormatError("timestamp must be an integer of Unix seconds (uint64)")
    if type(amount_fen) is not int or not 0 <= amount_fen <= AMOUNT_MAX:
        raise TransactionFormatError("amount_fen must be an integer 0..4294967295")


def encode_terminal_data(
    terminal_id: str, unpredictable_number: bytes, timestamp: int, amount_fen: int
) -> bytes:
    """The data field of SIGN TRANSACTION, also embedded verbatim in the signed message.

    ``len(terminal_id) (1) || terminal_id (ASCII) || UN (8) || timestamp (8, BE Unix seconds)
    || amount in fen (4, BE)``.
    """
    _check_terminal_data(terminal_id, unpredictable_number, timestamp, amount_fen)
    tid = terminal_id.encode("ascii")
    return (
        bytes((len(tid),))
        + tid
        + unpredictable_number
        + timestamp.to_bytes(8, "big")
        + amount_fen.to_bytes(4, "big")
    )


def decode_terminal_data(data: bytes) -> tuple[str, bytes, int, int]:
    """Parse SIGN TRANSACTION data into (terminal_id, UN, timestamp, amount_fen).

    Raises ``ValueError`` for a length mismatch (the card answers ``67 00``) and
    :class:`TransactionFormatError` for bad content (``6A 80``).
    """
    if not data:
        raise ValueError("empty terminal data")
    n = data[0]
    if len(data) != 1 + n + UN_LENGTH + 8 + 4:
        raise ValueError("terminal data length does not match its terminal id length")
    try:
        terminal_id = data[1 : 1 + n].decode("ascii")
    except UnicodeDecodeError as exc:
        raise TransactionFormatError("terminal id is not ASCII") from exc
    rest = data[1 + n :]
    un = rest[:UN_LENGTH]
    timestamp = int.from_bytes(rest[UN_LENGTH : UN_LENGTH + 8], "big")
    amount = int.from_bytes(rest[UN_LENGTH + 8 :], "big")
    _check_terminal_data(terminal_id, un, timestamp, amount)
    return terminal_id, un, timestamp, amount


def transaction_message(
    card_number: str,
    atc: int,
    terminal_id: str,
    unpredictable_number: bytes,
    timestamp: int,
    amount_fen: int,
    pin_verified: bool,
) -> bytes:
    """The exact bytes the card signs for SIGN TRANSACTION.

    ``TRANSACTION_DOMAIN (28) || card number (19 ASCII digits) || ATC (4, BE) ||
    terminal data (see encode_terminal_data) || PIN-verified flag (1: 00 or 01)``.
    """
    if not isinstance(card_number, str) or not is_valid_card_number(card_number):
        raise TransactionFormatError("card number must be 19 digits with a Luhn check digit")
    if type(atc) is not int or not 1 <= atc <= ATC_MAX:
        raise TransactionFormatError("atc must be an integer 1..4294967295")
    if not isinstance(pin_verified, bool):
        raise TransactionFormatError("pin_verified must be a boolean")
    return (
        TRANSACTION_DOMAIN
        + card_number.encode("ascii")
        + atc.to_bytes(4, "big")
        + encode_terminal_data(terminal_id, unpredictable_number, timestamp, amount_fen)
        + (b"\x01" if pin_verified else b"\x00")
    )


SIGN_RESPONSE_LENGTH = 4 + 1 + SIGNATURE_LENGTH


def encode_sign_response(atc: int, pin_verified: bool, signature: bytes) -> bytes:
    """SIGN TRANSACTION response data: ATC (4, BE) || PIN-verified flag (1) || r || s (64)."""
    return atc.to_bytes(4, "big") + (b"\x01" if pin_verified else b"\x00") + signature


def decode_sign_response(data: bytes) -> tuple[int, bool, bytes]:
    """Parse SIGN TRANSACTION response data into (atc, pin_verified, signature)."""
    if len(data) != SIGN_RESPONSE_LENGTH or data[4] not in (0, 1):
        raise CardResponseError(f"SIGN TRANSACTION answered {len(data)} malformed bytes")
    return int.from_bytes(data[:4], "big"), data[4] == 1, data[5:]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise TransactionFormatError("signature must be unpadded base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise TransactionFormatError("signature must be unpadded base64url") from exc


@dataclass(frozen=True)
class SignedTransaction:
    """A transaction as signed by the card, ready to send to (or verify on) the server.

    JSON form (:meth:`to_json`)::

        {"card_number": "6200000000000012344", "atc": 17, "terminal_id": "gate-0042",
         "unpredictable_number": "0011223344556677", "timestamp": 1767225600,
         "amount_fen": 200, "pin_verified": false, "signature": "<86 chars base64url>"}

    ``timestamp`` is Unix seconds (UTC) because that integer is what the card signs;
    ``signature`` is unpadded base64url of raw ``r || s``.
    """

    card_number: str
    atc: int
    terminal_id: str
    unpredictable_number: bytes
    timestamp: int
    amount_fen: int
    pin_verified: bool
    signature: bytes

    def __post_init__(self) -> None:
        """Validate every field by building the message once."""
        self.message()
        if not isinstance(self.signature, bytes) or len(self.signature) != SIGNATURE_LENGTH:
            raise TransactionFormatError(f"signature must be {SIGNATURE_LENGTH} bytes (r || s)")

    def message(self) -> bytes:
        """The signed bytes (see :func:`transaction_message`)."""
        return transaction_message(
            self.card_number,
            self.atc,
            self.terminal_id,
            self.unpredictable_number,
            self.timestamp,
            self.amount_fen,
            self.pin_verified,
        )

    def verify(self, public_key: ec.EllipticCurvePublicKey) -> None:
        """Raise :class:`SignatureError` unless the card's key signed exactly this transaction."""
        verify_signature(public_key, self.message(), self.signature)

    def is_valid(self, public_key: ec.EllipticCurvePublicKey) -> bool:
        """Boolean form of :meth:`verify`."""
        try:
            self.verify(public_key)
        except SignatureError:
            return False
        return True

    def to_json(self) -> dict[str, Any]:
        """The JSON object a terminal POSTs (see the class docstring)."""
        return {
            "card_number": self.card_number,
            "atc": self.atc,
            "terminal_id": self.terminal_id,
            "unpredictable_number": self.unpredictable_number.hex(),
            "timestamp": self.timestamp,
            "amount_fen": self.amount_fen,
            "pin_verified": self.pin_verified,
            "signature": _b64url(self.signature),
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> SignedTransaction:
        """Parse and validate the JSON object; raise :class:`TransactionFormatError` if bad."""
        expected = {
            "card_number",
            "atc",
            "terminal_id",
            "unpredictable_number",
            "timestamp",
            "amount_fen",
            "pin_verified",
            "signature",
        }
        if not isinstance(obj, Mapping):
            raise TransactionFormatError("a signed transaction is a JSON object")
        missing = expected - obj.keys()
        extra = obj.keys() - expected
        if missing or extra:
            raise TransactionFormatError(
                f"signed transaction fields: missing {sorted(missing)}, unexpected {sorted(extra)}"
            )
        un_hex = obj["unpredictable_number"]
        if not isinstance(un_hex, str) or not re.fullmatch(r"[0-9a-fA-F]{16}", un_hex):
            raise TransactionFormatError("unpredictable_number must be 16 hex digits")
        signature = obj["signature"]
        if not isinstance(signature, str):
            raise TransactionFormatError("signature must be a base64url string")
        return cls(
            card_number=obj["card_number"],
            atc=obj["atc"],
            terminal_id=obj["terminal_id"],
            unpredictable_number=bytes.fromhex(un_hex),
            timestamp=obj["timestamp"],
            amount_fen=obj["amount_fen"],
            pin_verified=obj["pin_verified"],
            signature=_b64url_decode(signature),
        )
