"""High-level client for the citizen-card application, over any :class:`CardReader`.

:class:`CitizenCardClient` builds the APDUs of ``docs/card-protocol.md``, checks status words
(raising the typed errors of :mod:`card_reader.apdu`) and decodes the answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from card_reader.apdu import SW
from card_reader.apdu import CommandAPDU
from card_reader.apdu import ResponseAPDU
from card_reader.errors import CardResponseError
from card_reader.protocol import AID
from card_reader.protocol import CHALLENGE_MAX
from card_reader.protocol import CHALLENGE_MIN
from card_reader.protocol import CLA_CHAINING_BIT
from card_reader.protocol import CLA_ISO
from card_reader.protocol import CLA_PROPRIETARY
from card_reader.protocol import PIN_REF
from card_reader.protocol import PUK_REF
from card_reader.protocol import SIGNATURE_LENGTH
from card_reader.protocol import Ins
from card_reader.protocol import Lifecycle
from card_reader.protocol import SignedTransaction
from card_reader.protocol import Tag
from card_reader.protocol import decode_date
from card_reader.protocol import decode_sign_response
from card_reader.protocol import encode_date
from card_reader.protocol import encode_terminal_data
from card_reader.protocol import is_valid_card_number
from card_reader.protocol import is_valid_pin
from card_reader.protocol import is_valid_puk
from card_reader.protocol import public_key_from_point
from card_reader.protocol import public_key_to_point

if TYPE_CHECKING:
    from card_reader import CardReader

#: Largest data field per APDU when writing with command chaining (short APDUs only).
CHUNK_SIZE = 255


@dataclass(frozen=True)
class CardData:
    """Everything any terminal may read from the card."""

    card_number: str
    holder_name: str
    citizen_ref: str
    valid_from: date
    valid_until: date
    card_certificate: bytes
    issuer_certificate: bytes
    public_key: ec.EllipticCurvePublicKey

    def to_json(self) -> dict[str, Any]:
        """A JSON-friendly summary (certificates as hex DER, key as hex point)."""
        return {
            "card_number": self.card_number,
            "holder_name": self.holder_name,
            "citizen_ref": self.citizen_ref,
            "valid_from": self.valid_from.isoformat(),
            "valid_until": self.valid_until.isoformat(),
            "public_key": public_key_to_point(self.public_key).hex(),
            "card_certificate": self.card_certificate.hex(),
            "issuer_certificate": self.issuer_certificate.hex(),
        }


@dataclass(frozen=True)
class CardStatus:
    """Life cycle, retry counters and session flags (GET DATA DF40 plus the ATC)."""

    lifecycle: Lifecycle
    pin_tries_left: int
    puk_tries_left: int
    pin_verified: bool
    pin_set: bool
    key_generated: bool
    atc: int

    def to_json(self) -> dict[str, Any]:
        """A JSON-friendly form."""
        return {
            "lifecycle": self.lifecycle.name.lower(),
            "pin_tries_left": self.pin_tries_left,
            "puk_tries_left": self.puk_tries_left,
            "pin_verified": self.pin_verified,
            "pin_set": self.pin_set,
            "key_generated": self.key_generated,
            "atc": self.atc,
        }


def _parse_fci(fci: bytes) -> tuple[Lifecycle, str | None]:
    """Life cycle (tag 80) and card number (tag 5A, once written) from A5 inside 6F."""

    def tlvs(data: bytes) -> dict[int, bytes]:
        out: dict[int, bytes] = {}
        i = 0
        while i + 2 <= len(data):
            tag, length = data[i], data[i + 1]
            if length > 0x7F or i + 2 + length > len(data):
                raise CardResponseError("malformed FCI")
            out[tag] = data[i + 2 : i + 2 + length]
            i += 2 + length
        if i != len(data):
            raise CardResponseError("malformed FCI")
        return out

    template = tlvs(fci).get(0x6F)
    proprietary = tlvs(template).get(0xA5) if template is not None else None
    state = tlvs(proprietary).get(0x80) if proprietary is not None else None
    if proprietary is None or state is None or len(state) != 1:
        raise CardResponseError("FCI has no life-cycle state")
    try:
        lifecycle = Lifecycle(state[0])
    except ValueError:
        raise CardResponseError(f"unknown life-cycle state {state[0]:02X}") from None
    number = tlvs(proprietary).get(0x5A)
    if number is None:
        return lifecycle, None
    text = number.decode("ascii", "replace")
    if not is_valid_card_number(text):
        raise CardResponseError("FCI carries an invalid card number")
    return lifecycle, text


class CitizenCardClient:
    """Talks to the citizen-card application through a :class:`CardReader`."""

    def __init__(self, reader: CardReader) -> None:
        """Use ``reader`` (already connected to a card)."""
        self.reader = reader
        self._card_number: str | None = None

    def _send(self, command: CommandAPDU, *allowed: int) -> ResponseAPDU:
        return self.reader.transmit(command).check(*allowed)

    # --- reading ----------------------------------------------------------------------------

    def select(self) -> Lifecycle:
        """SELECT the application; return its life-cycle state (a new session begins).

        A terminated card answers ``62 83``; that is returned as ``Lifecycle.TERMINATED``.
        """
        self._card_number = None
        response = self._send(
            CommandAPDU(CLA_ISO, Ins.SELECT, 0x04, 0x00, AID, ne=256),
            SW.SELECTED_FILE_DEACTIVATED,
        )
        lifecycle, self._card_number = _parse_fci(response.data)
        return lifecycle

    def read_object(self, tag: Tag) -> bytes:
        """GET DATA for one data object (long objects arrive through GET RESPONSE)."""
        return self._send(CommandAPDU(CLA_ISO, Ins.GET_DATA, tag >> 8, tag & 0xFF, ne=256)).data

    def card_number(self) -> str:
        """The card number (from the SELECT answer, else GET DATA; cached until re-select)."""
        if self._card_number is None:
            number = self.read_object(Tag.CARD_NUMBER).decode("ascii", "replace")
            if not is_valid_card_number(number):
                raise CardResponseError("card returned an invalid card number")
            self._card_number = number
        return self._card_number

    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The card's ECDSA P-256 public key."""
        return public_key_from_point(self.read_object(Tag.PUBLIC_KEY))

    def read_card_data(self) -> CardData:
        """Read every public data object."""
        try:
            return CardData(
                card_number=self.card_number(),
                holder_name=self.read_object(Tag.HOLDER_NAME).decode("utf-8"),
                citizen_ref=self.read_object(Tag.CITIZEN_REF).decode("utf-8"),
                valid_from=decode_date(self.read_object(Tag.VALID_FROM)),
                valid_until=decode_date(self.read_object(Tag.VALID_UNTIL)),
                card_certificate=self.read_object(Tag.CARD_CERTIFICATE),
                issuer_certificate=self.read_object(Tag.ISSUER_CERTIFICATE),
                public_key=self.public_key(),
            )
        except (UnicodeDecodeError, ValueError) as exc:
            raise CardResponseError(f"card returned malformed data: {exc}") from exc

    def status(self) -> CardStatus:
        """Life cycle, PIN/PUK tries left, session PIN flag and ATC."""
        raw = self.read_object(Tag.STATUS)
        atc = self.read_object(Tag.ATC)
        if len(raw) != 4 or len(atc) != 4:
            raise CardResponseError("malformed card status")
        try:
            lifecycle = Lifecycle(raw[0])
        except ValueError:
            raise CardResponseError(f"unknown life-cycle state {raw[0]:02X}") from None
        return CardStatus(
            lifecycle=lifecycle,
            pin_tries_left=raw[1],
            puk_tries_left=raw[2],
            pin_verified=bool(raw[3] & 0x01),
            pin_set=bool(raw[3] & 0x02),
            key_generated=bool(raw[3] & 0x04),
            atc=int.from_bytes(atc, "big"),
        )

    # --- PIN management ---------------------------------------------------------------------

    def verify_pin(self, pin: str) -> None:
        """VERIFY the PIN; raises ``VerificationFailedError`` (with ``tries_left``) if wrong."""
        if not is_valid_pin(pin):
            raise ValueError("the PIN is 6 digits")
        self._send(CommandAPDU(CLA_ISO, Ins.VERIFY, 0x00, PIN_REF, pin.encode("ascii")))

    def pin_verified(self) -> bool:
        """Empty VERIFY: True if verified in this session; spends no try."""
        response = self.reader.transmit(CommandAPDU(CLA_ISO, Ins.VERIFY, 0x00, PIN_REF))
        if response.ok:
            return True
        if response.sw & 0xFFF0 == 0x63C0:
            return False
        response.check()
        return False

    def change_pin(self, old_pin: str, new_pin: str) -> None:
        """CHANGE REFERENCE DATA for the PIN."""
        if not (is_valid_pin(old_pin) and is_valid_pin(new_pin)):
            raise ValueError("the PIN is 6 digits")
        data = (old_pin + new_pin).encode("ascii")
        self._send(CommandAPDU(CLA_ISO, Ins.CHANGE_REFERENCE_DATA, 0x00, PIN_REF, data))

    def change_puk(self, old_puk: str, new_puk: str) -> None:
        """CHANGE REFERENCE DATA for the PUK."""
        if not (is_valid_puk(old_puk) and is_valid_puk(new_puk)):
            raise ValueError("the PUK is 8 digits")
        data = (old_puk + new_puk).encode("ascii")
        self._send(CommandAPDU(CLA_ISO, Ins.CHANGE_REFERENCE_DATA, 0x00, PUK_REF, data))

    def unblock_pin(self, puk: str, new_pin: str | None = None) -> None:
        """RESET RETRY COUNTER with the PUK, optionally setting a new PIN."""
        if not is_valid_puk(puk):
            raise ValueError("the PUK is 8 digits")
        if new_pin is not None and not is_valid_pin(new_pin):
            raise ValueError("the PIN is 6 digits")
        p1 = 0x00 if new_pin is not None else 0x01
        data = (puk + (new_pin or "")).encode("ascii")
        self._send(CommandAPDU(CLA_ISO, Ins.RESET_RETRY_COUNTER, p1, PIN_REF, data))

    # --- signatures -------------------------------------------------------------------------

    def sign_transaction(
        self, terminal_id: str, unpredictable_number: bytes, timestamp: int, amount_fen: int
    ) -> SignedTransaction:
        """SIGN TRANSACTION: the card increments its ATC and signs; one command round trip."""
        data = encode_terminal_data(terminal_id, unpredictable_number, timestamp, amount_fen)
        card_number = self.card_number()
        response = self._send(CommandAPDU(CLA_PROPRIETARY, Ins.SIGN_TRANSACTION, 0, 0, data, 256))
        atc, pin_verified, signature = decode_sign_response(response.data)
        return SignedTransaction(
            card_number=card_number,
            atc=atc,
            terminal_id=terminal_id,
            unpredictable_number=unpredictable_number,
            timestamp=timestamp,
            amount_fen=amount_fen,
            pin_verified=pin_verified,
            signature=signature,
        )

    def internal_authenticate(self, challenge: bytes) -> bytes:
        """INTERNAL AUTHENTICATE: raw ``r || s`` over the challenge (needs a verified PIN)."""
        if not CHALLENGE_MIN <= len(challenge) <= CHALLENGE_MAX:
            raise ValueError(f"the challenge is {CHALLENGE_MIN}..{CHALLENGE_MAX} bytes")
        response = self._send(
            CommandAPDU(CLA_ISO, Ins.INTERNAL_AUTHENTICATE, 0, 0, challenge, ne=256)
        )
        if len(response.data) != SIGNATURE_LENGTH:
            raise CardResponseError("INTERNAL AUTHENTICATE answered a malformed signature")
        return response.data

    # --- personalization --------------------------------------------------------------------

    def generate_key_pair(self) -> ec.EllipticCurvePublicKey:
        """GENERATE KEY PAIR on the card; the private key never leaves it."""
        response = self._send(CommandAPDU(CLA_PROPRIETARY, Ins.GENERATE_KEY_PAIR, 0, 0, ne=256))
        return public_key_from_point(response.data)

    def put_data(self, tag: Tag, value: bytes, *, extended: bool = False) -> None:
        """PUT DATA one object: command chaining in 255-byte chunks, or one extended APDU."""
        p1, p2 = tag >> 8, tag & 0xFF
        if extended or len(value) <= CHUNK_SIZE:
            self._send(CommandAPDU(CLA_PROPRIETARY, Ins.PUT_DATA, p1, p2, value))
            return
        chunks = [value[i : i + CHUNK_SIZE] for i in range(0, len(value), CHUNK_SIZE)]
        for chunk in chunks[:-1]:
            cla = CLA_PROPRIETARY | CLA_CHAINING_BIT
            self._send(CommandAPDU(cla, Ins.PUT_DATA, p1, p2, chunk))
        self._send(CommandAPDU(CLA_PROPRIETARY, Ins.PUT_DATA, p1, p2, chunks[-1]))

    def write_data(
        self,
        *,
        card_number: str | None = None,
        holder_name: str | None = None,
        citizen_ref: str | None = None,
        valid_from: date | None = None,
        valid_until: date | None = None,
        card_certificate: bytes | None = None,
        issuer_certificate: bytes | None = None,
    ) -> None:
        """Write the given personalization objects (others are left as they are)."""
        values: list[tuple[Tag, bytes | None]] = [
            (Tag.CARD_NUMBER, card_number.encode("ascii") if card_number is not None else None),
            (Tag.HOLDER_NAME, holder_name.encode("utf-8") if holder_name is not None else None),
            (Tag.CITIZEN_REF, citizen_ref.encode("utf-8") if citizen_ref is not None else None),
            (Tag.VALID_FROM, encode_date(valid_from) if valid_from is not None else None),
            (Tag.VALID_UNTIL, encode_date(valid_until) if valid_until is not None else None),
            (Tag.CARD_CERTIFICATE, card_certificate),
            (Tag.ISSUER_CERTIFICATE, issuer_certificate),
        ]
        for tag, value in values:
            if value is not None:
                self.put_data(tag, value)

    def set_pin_puk(self, pin: str, puk: str) -> None:
        """Set the initial PIN and PUK (personalization only)."""
        if not is_valid_pin(pin):
            raise ValueError("the PIN is 6 digits")
        if not is_valid_puk(puk):
            raise ValueError("the PUK is 8 digits")
        data = (pin + puk).encode("ascii")
        self._send(CommandAPDU(CLA_PROPRIETARY, Ins.SET_PIN_PUK, 0, 0, data))

    def lock(self) -> None:
        """End personalization for good: the card becomes operational."""
        self._send(CommandAPDU(CLA_PROPRIETARY, Ins.LOCK, 0, 0))
