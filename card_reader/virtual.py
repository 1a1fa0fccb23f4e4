"""A virtual citizen card: the card application behind one raw-APDU entry point.

:class:`VirtualCard` mirrors vsmartcard's ``SmartcardOS`` (``atr``, ``power_up``,
``power_down``, ``reset``, ``execute(bytes) -> bytes``). Every caller, tests included, reaches
the application through :meth:`VirtualCard.execute`, the path a real card's bytes take.

Persistent state (key pair, data objects, PIN/PUK and their counters, ATC, life cycle) is
written to a JSON file atomically before the card answers a command that changed it. The file
holds the private key in clear: it models the card's secure memory and is a test/demo
artefact, never a way to store real keys.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any
from typing import Self
from typing import TypeVar

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from card_reader.apdu import SW
from card_reader.apdu import APDUFormatError
from card_reader.apdu import CommandAPDU
from card_reader.apdu import ResponseAPDU
from card_reader.apdu import exchange
from card_reader.errors import TransactionFormatError
from card_reader.errors import VirtualCardStateError
from card_reader.protocol import AID
from card_reader.protocol import ATC_MAX
from card_reader.protocol import ATR
from card_reader.protocol import CARD_NUMBER_LENGTH
from card_reader.protocol import CERTIFICATE_MAX
from card_reader.protocol import CHALLENGE_MAX
from card_reader.protocol import CHALLENGE_MIN
from card_reader.protocol import CITIZEN_REF_MAX
from card_reader.protocol import CLA_CHAINING_BIT
from card_reader.protocol import CLA_ISO
from card_reader.protocol import CLA_PROPRIETARY
from card_reader.protocol import HOLDER_NAME_MAX
from card_reader.protocol import PIN_LENGTH
from card_reader.protocol import PIN_MAX_TRIES
from card_reader.protocol import PIN_REF
from card_reader.protocol import PUK_LENGTH
from card_reader.protocol import PUK_MAX_TRIES
from card_reader.protocol import PUK_REF
from card_reader.protocol import WRITABLE_TAGS
from card_reader.protocol import Ins
from card_reader.protocol import Lifecycle
from card_reader.protocol import Tag
from card_reader.protocol import auth_message
from card_reader.protocol import decode_date
from card_reader.protocol import decode_terminal_data
from card_reader.protocol import encode_sign_response
from card_reader.protocol import is_valid_card_number
from card_reader.protocol import public_key_to_point
from card_reader.protocol import signature_from_der
from card_reader.protocol import transaction_message

log = logging.getLogger(__name__)
_T = TypeVar("_T")

STATE_FORMAT = "citizen-card-virtual/1"
#: Upper bound for data gathered by command chaining (the largest object is 2048 bytes).
MAX_CHAIN_DATA = 4096
PROTOCOL_VERSION = 0x01


class _Status(Exception):
    """Internal: abort command processing with a status word."""

    def __init__(self, sw: int) -> None:
        super().__init__(f"{sw:04X}")
        self.sw = sw


@dataclass
class Secret:
    """A PIN or PUK as the card stores it: salted SHA-256 and a retry counter."""

    salt: bytes
    digest: bytes
    tries_left: int

    @classmethod
    def new(cls, value: str, max_tries: int) -> Secret:
        """Store a fresh secret with a full retry counter."""
        salt = secrets.token_bytes(16)
        return cls(salt, _digest(salt, value), max_tries)

    def matches(self, value: str) -> bool:
        """Constant-time comparison against a candidate value."""
        return hmac.compare_digest(self.digest, _digest(self.salt, value))


def _digest(salt: bytes, value: str) -> bytes:
    return hashlib.sha256(salt + value.encode("ascii")).digest()


@dataclass
class CardState:
    """Everything the card keeps across power cycles."""

    lifecycle: Lifecycle = Lifecycle.PERSONALIZATION
    private_key: ec.EllipticCurvePrivateKey | None = None
    objects: dict[int, bytes] = field(default_factory=dict)
    pin: Secret | None = None
    puk: Secret | None = None
    atc: int = 0

    def to_json(self) -> dict[str, Any]:
        """Serialize for the state file."""

        def secret(value: Secret | None) -> dict[str, Any] | None:
            if value is None:
                return None
            return {
                "salt": value.salt.hex(),
                "digest": value.digest.hex(),
                "tries_left": value.tries_left,
            }

        key = None
        if self.private_key is not None:
            key = self.private_key.private_numbers().private_value.to_bytes(32, "big").hex()
        return {
            "format": STATE_FORMAT,
            "lifecycle": self.lifecycle.name.lower(),
            "private_key": key,
            "objects": {f"{tag:04X}": value.hex() for tag, value in sorted(self.objects.items())},
            "pin": secret(self.pin),
            "puk": secret(self.puk),
            "atc": self.atc,
        }

    @classmethod
    def from_json(cls, obj: Any) -> CardState:
        """Parse and validate a state file; raise :class:`VirtualCardStateError` if bad."""
        try:
            if obj.get("format") != STATE_FORMAT:
                raise ValueError(f"format is not {STATE_FORMAT!r}")
            lifecycle = Lifecycle[str(obj["lifecycle"]).upper()]
            key = None
            if obj["private_key"] is not None:
                scalar = int.from_bytes(bytes.fromhex(obj["private_key"]), "big")
                key = ec.derive_private_key(scalar, ec.SECP256R1())
            objects: dict[int, bytes] = {}
            for tag_hex, value_hex in obj["objects"].items():
                tag = Tag(int(tag_hex, 16))
                if tag not in WRITABLE_TAGS:
                    raise ValueError(f"object {tag_hex} is not a stored object")
                objects[tag] = bytes.fromhex(value_hex)

            def secret(value: Any, max_tries: int) -> Secret | None:
                if value is None:
                    return None
                tries = value["tries_left"]
                if type(tries) is not int or not 0 <= tries <= max_tries:
                    raise ValueError(f"tries_left out of range: {tries!r}")
                return Secret(bytes.fromhex(value["salt"]), bytes.fromhex(value["digest"]), tries)

            pin = secret(obj["pin"], PIN_MAX_TRIES)
            puk = secret(obj["puk"], PUK_MAX_TRIES)
            atc = obj["atc"]
            if type(atc) is not int or not 0 <= atc <= ATC_MAX:
                raise ValueError(f"atc out of range: {atc!r}")
            complete = (
                key is not None
                and pin is not None
                and puk is not None
                and all(tag in objects for tag in WRITABLE_TAGS)
            )
            if lifecycle != Lifecycle.PERSONALIZATION and not complete:
                raise ValueError(f"a {lifecycle.name.lower()} card must be complete")
            if lifecycle == Lifecycle.TERMINATED and puk is not None and puk.tries_left != 0:
                raise ValueError("a terminated card has a blocked PUK")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise VirtualCardStateError(f"invalid virtual card state: {exc}") from exc
        return cls(lifecycle, key, objects, pin, puk, atc)


@dataclass
class _Chain:
    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes


@dataclass
class _Pending:
    data: bytes
    final_sw: int


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON so that a crash leaves either the old or the new file, never a torn one."""
    directory = path.parent
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(obj, handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        raise
    # The rename itself is only durable once the directory entry is on disk.
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _der_sequence_ok(data: bytes) -> bool:
    """True if ``data`` is exactly one DER SEQUENCE (the outer shape of an X.509 certificate)."""
    if len(data) < 2 or data[0] != 0x30:
        return False
    first = data[1]
    if first < 0x80:
        return len(data) == 2 + first
    count = first & 0x7F
    if count == 0 or count > 2 or len(data) < 2 + count:
        return False
    length = int.from_bytes(data[2 : 2 + count], "big")
    return length >= 0x80 and len(data) == 2 + count + length


def _text_ok(data: bytes) -> bool:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return text.isprintable() and text.strip() == text


def _digits(data: bytes) -> str | None:
    return data.decode("ascii") if data.isascii() and data.isdigit() else None


class VirtualCard:
    """The citizen-card application, executing raw APDUs like a real card."""

    def __init__(self, state: CardState | None = None, path: str | Path | None = None) -> None:
        """Wrap ``state`` (a blank card if None); persist to ``path`` if given."""
        self._state = state if state is not None else CardState()
        self._path = Path(path) if path is not None else None
        self._mutex = threading.RLock()
        self._selected = False
        self._pin_verified = False
        self._pending: _Pending | None = None
        self._chain: _Chain | None = None

    # --- creation and persistence -----------------------------------------------------------

    @classmethod
    def create(cls, path: str | Path | None = None, *, overwrite: bool = False) -> VirtualCard:
        """Create a blank (unpersonalized) card, saved to ``path`` if given."""
        if path is not None and Path(path).exists() and not overwrite:
            raise VirtualCardStateError(f"{path} already exists (use overwrite to replace it)")
        card = cls(CardState(), path)
        card.save()
        return card

    @classmethod
    def load(cls, path: str | Path) -> VirtualCard:
        """Load a card from its state file."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise VirtualCardStateError(f"no virtual card at {path}") from exc
        except OSError as exc:
            raise VirtualCardStateError(f"cannot read {path}: {exc.strerror}") from exc
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise VirtualCardStateError(f"{path} is not JSON: {exc}") from exc
        return cls(CardState.from_json(obj), path)

    @property
    def path(self) -> Path | None:
        """The state file, or None for an in-memory card."""
        return self._path

    def save(self) -> None:
        """Write the persistent state (no-op for an in-memory card)."""
        with self._mutex:
            if self._path is not None:
                write_json_atomic(self._path, self._state.to_json())

    # --- read-only views for tests and tools (never used by the protocol) -------------------

    @property
    def lifecycle(self) -> Lifecycle:
        """Current life-cycle state."""
        return self._state.lifecycle

    @property
    def atc(self) -> int:
        """Application transaction counter."""
        return self._state.atc

    @property
    def pin_tries_left(self) -> int | None:
        """PIN retry counter, None before personalization set it."""
        return None if self._state.pin is None else self._state.pin.tries_left

    @property
    def puk_tries_left(self) -> int | None:
        """PUK retry counter, None before personalization set it."""
        return None if self._state.puk is None else self._state.puk.tries_left

    @property
    def pin_verified(self) -> bool:
        """Whether the PIN was verified in the current session."""
        return self._pin_verified

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey | None:
        """The card's public key, None before GENERATE KEY PAIR."""
        key = self._state.private_key
        return None if key is None else key.public_key()

    def state_json(self) -> dict[str, Any]:
        """The persistent state in its file form (what :meth:`save` writes)."""
        with self._mutex:
            return self._state.to_json()

    def stored_object(self, tag: Tag) -> bytes | None:
        """A personalization data object as stored, None if not written."""
        return self._state.objects.get(tag)

    # --- SmartcardOS interface --------------------------------------------------------------

    def atr(self) -> bytes:
        """Answer to reset."""
        return ATR

    def power_up(self) -> None:
        """Contact activation: a fresh session."""
        self._reset_session()

    def power_down(self) -> None:
        """Deactivation: session state (selection, PIN verified) is lost."""
        self._reset_session()

    def reset(self) -> None:
        """Warm reset: a fresh session."""
        self._reset_session()

    def _reset_session(self) -> None:
        with self._mutex:
            self._selected = False
            self._pin_verified = False
            self._pending = None
            self._chain = None

    def execute(self, apdu: bytes) -> bytes:
        """Process one command APDU and return the response APDU (data || SW1 SW2).

        Never raises: every failure becomes a status word.
        """
        with self._mutex:
            try:
                return self._process(bytes(apdu))
            except _Status as status:
                return status.sw.to_bytes(2, "big")
            except Exception:
                # A real card cannot throw at the terminal; 6F00 is the ISO catch-all.
                log.exception("virtual card failed on APDU %s", bytes(apdu).hex())
                self._pending = None
                self._chain = None
                return SW.NO_PRECISE_DIAGNOSIS.to_bytes(2, "big")

    # --- dispatch ---------------------------------------------------------------------------

    def _process(self, raw: bytes) -> bytes:
        pending, self._pending = self._pending, None
        try:
            cmd = CommandAPDU.from_bytes(raw)
        except APDUFormatError:
            self._chain = None
            raise _Status(SW.WRONG_LENGTH) from None
        base_cla = cmd.cla & ~CLA_CHAINING_BIT
        if base_cla not in (CLA_ISO, CLA_PROPRIETARY):
            self._chain = None
            raise _Status(SW.CLA_NOT_SUPPORTED)
        entry = _COMMANDS.get(cmd.ins)
        if entry is None:
            self._chain = None
            raise _Status(SW.INS_NOT_SUPPORTED)
        expected_cla, handler = entry
        if base_cla != expected_cla:
            self._chain = None
            raise _Status(SW.CLA_NOT_SUPPORTED)

        joined = self._join_chain(cmd, base_cla)
        if joined is None:
            return SW.OK.to_bytes(2, "big")
        cmd = joined
        if handler is None:
            return self._get_response(cmd, pending)
        if cmd.ins != Ins.SELECT and not self._selected:
            raise _Status(SW.CONDITIONS_NOT_SATISFIED)
        return handler(self, cmd)

    def _join_chain(self, cmd: CommandAPDU, base_cla: int) -> CommandAPDU | None:
        """Apply ISO command chaining; None means "chunk stored, wait for the next one"."""
        chain = self._chain
        header = (base_cla, cmd.ins, cmd.p1, cmd.p2)
        if chain is not None and (chain.cla, chain.ins, chain.p1, chain.p2) != header:
            self._chain = None
            raise _Status(SW.LAST_COMMAND_OF_CHAIN_EXPECTED)
        more = bool(cmd.cla & CLA_CHAINING_BIT)
        if more and cmd.ins != Ins.PUT_DATA:
            self._chain = None
            raise _Status(SW.COMMAND_CHAINING_NOT_SUPPORTED)
        if more:
            # Fail on the first chunk rather than after the whole certificate was sent.
            self._check_put_data_header(cmd)
            data = (chain.data if chain is not None else b"") + cmd.data
            if len(data) > MAX_CHAIN_DATA:
                self._chain = None
                raise _Status(SW.NOT_ENOUGH_MEMORY)
            self._chain = _Chain(base_cla, cmd.ins, cmd.p1, cmd.p2, data)
            return None
        if chain is not None:
            self._chain = None
            return replace(cmd, cla=base_cla, data=chain.data + cmd.data)
        return cmd

    def _respond(self, data: bytes, ne: int, *, repeatable: bool, final_sw: int = SW.OK) -> bytes:
        """Return ``data`` within the terminal's Ne.

        Too-small Ne: ``6C xx`` for commands that are safe to re-send, otherwise the data is
        kept for GET RESPONSE and the card answers ``61 xx`` (so no signature is ever lost).
        """
        if ne >= len(data):
            return data + final_sw.to_bytes(2, "big")
        if repeatable and len(data) <= 256:
            return bytes((0x6C, len(data) & 0xFF))
        self._pending = _Pending(data[ne:], final_sw)
        return data[:ne] + bytes((0x61, min(len(data) - ne, 256) & 0xFF))

    def _get_response(self, cmd: CommandAPDU, pending: _Pending | None) -> bytes:
        if (cmd.p1, cmd.p2) != (0, 0):
            raise _Status(SW.INCORRECT_P1P2)
        if cmd.data or cmd.ne == 0:
            raise _Status(SW.WRONG_LENGTH)
        if pending is None:
            raise _Status(SW.CONDITIONS_NOT_SATISFIED)
        return self._respond(pending.data, cmd.ne, repeatable=False, final_sw=pending.final_sw)

    def _commit(self) -> None:
        """Persist state before answering; a write failure is the card's ``65 81``."""
        try:
            self.save()
        except OSError:
            log.exception("virtual card could not persist its state")
            raise _Status(SW.MEMORY_FAILURE) from None

    # --- ISO commands -----------------------------------------------------------------------

    def _select(self, cmd: CommandAPDU) -> bytes:
        if cmd.p1 != 0x04 or cmd.p2 not in (0x00, 0x0C):
            raise _Status(SW.INCORRECT_P1P2)
        if not 5 <= len(cmd.data) <= 16:
            raise _Status(SW.WRONG_LENGTH)
        # Selecting (any AID) starts a new application session.
        self._selected = False
        self._pin_verified = False
        self._chain = None
        if cmd.data != AID:
            raise _Status(SW.FILE_NOT_FOUND)
        self._selected = True
        final = (
            SW.SELECTED_FILE_DEACTIVATED if self._state.lifecycle == Lifecycle.TERMINATED else SW.OK
        )
        if cmd.p2 == 0x0C:
            return final.to_bytes(2, "big")
        return self._respond(self._fci(), cmd.ne, repeatable=True, final_sw=final)

    def _fci(self) -> bytes:
        proprietary = bytes((0x80, 1, self._state.lifecycle, 0x81, 1, PROTOCOL_VERSION))
        number = self._state.objects.get(Tag.CARD_NUMBER)
        if number is not None:
            # The card number in the FCI saves the gate a GET DATA: a tap is SELECT + SIGN.
            proprietary += bytes((0x5A, len(number))) + number
        body = bytes((0x84, len(AID))) + AID + bytes((0xA5, len(proprietary))) + proprietary
        return bytes((0x6F, len(body))) + body

    def _get_data(self, cmd: CommandAPDU) -> bytes:
        tag_value = (cmd.p1 << 8) | cmd.p2
        try:
            tag = Tag(tag_value)
        except ValueError:
            raise _Status(SW.REFERENCED_DATA_NOT_FOUND) from None
        if cmd.data:
            raise _Status(SW.WRONG_LENGTH)
        state = self._state
        value: bytes | None
        if tag == Tag.PUBLIC_KEY:
            key = self.public_key
            value = None if key is None else public_key_to_point(key)
        elif tag == Tag.ATC:
            value = state.atc.to_bytes(4, "big")
        elif tag == Tag.STATUS:
            flags = (
                (0x01 if self._pin_verified else 0)
                | (0x02 if state.pin is not None else 0)
                | (0x04 if state.private_key is not None else 0)
            )
            value = bytes(
                (
                    state.lifecycle,
                    state.pin.tries_left if state.pin else 0,
                    state.puk.tries_left if state.puk else 0,
                    flags,
                )
            )
        else:
            value = state.objects.get(tag)
        if value is None:
            raise _Status(SW.REFERENCED_DATA_NOT_FOUND)
        return self._respond(value, cmd.ne, repeatable=True)

    def _user_state_check(self) -> None:
        """PIN commands: only on an operational card; a terminated card's secrets are dead."""
        if self._state.lifecycle == Lifecycle.PERSONALIZATION:
            raise _Status(SW.CONDITIONS_NOT_SATISFIED)
        if self._state.lifecycle == Lifecycle.TERMINATED:
            raise _Status(SW.AUTH_METHOD_BLOCKED)

    def _try_secret(self, secret: Secret, candidate: str, *, is_puk: bool) -> bool:
        """Anti-tearing check: burn one try on disk, then compare, then restore on success."""
        if secret.tries_left == 0:
            raise _Status(SW.AUTH_METHOD_BLOCKED)
        secret.tries_left -= 1
        self._commit()
        if secret.matches(candidate):
            secret.tries_left = PUK_MAX_TRIES if is_puk else PIN_MAX_TRIES
            return True
        if is_puk:
            self._pin_verified = False
            if secret.tries_left == 0:
                self._state.lifecycle = Lifecycle.TERMINATED
                self._commit()
        else:
            self._pin_verified = False
        raise _Status(0x63C0 | secret.tries_left)

    def _verify(self, cmd: CommandAPDU) -> bytes:
        if cmd.p1 not in (0x00, 0xFF):
            raise _Status(SW.INCORRECT_P1P2)
        if cmd.p2 != PIN_REF:
            raise _Status(SW.REFERENCED_DATA_NOT_FOUND)
        if cmd.p1 == 0xFF:
            # ISO 7816-4: P1=FF resets the verification status.
            if cmd.data:
                raise _Status(SW.WRONG_LENGTH)
            self._pin_verified = False
            return SW.OK.to_bytes(2, "big")
        if cmd.data and len(cmd.data) != PIN_LENGTH:
            raise _Status(SW.WRONG_LENGTH)
        self._user_state_check()
        pin = self._required(self._state.pin)
        if not cmd.data:
            # Empty VERIFY asks for the status without spending a try.
            if pin.tries_left == 0:
                raise _Status(SW.AUTH_METHOD_BLOCKED)
            if self._pin_verified:
                return SW.OK.to_bytes(2, "big")
            raise _Status(0x63C0 | pin.tries_left)
        candidate = _digits(cmd.data)
        if candidate is None:
            raise _Status(SW.WRONG_DATA)
        self._try_secret(pin, candidate, is_puk=False)
        self._commit()
        self._pin_verified = True
        return SW.OK.to_bytes(2, "big")

    def _change_reference_data(self, cmd: CommandAPDU) -> bytes:
        if cmd.p1 != 0x00:
            raise _Status(SW.INCORRECT_P1P2)
        if cmd.p2 not in (PIN_REF, PUK_REF):
            raise _Status(SW.REFERENCED_DATA_NOT_FOUND)
        is_puk = cmd.p2 == PUK_REF
        size = PUK_LENGTH if is_puk else PIN_LENGTH
        if len(cmd.data) != 2 * size:
            raise _Status(SW.WRONG_LENGTH)
        self._user_state_check()
        old, new = _digits(cmd.data[:size]), _digits(cmd.data[size:])
        if old is None or new is None:
            raise _Status(SW.WRONG_DATA)
        secret = self._required(self._state.puk if is_puk else self._state.pin)
        self._try_secret(secret, old, is_puk=is_puk)
        replacement = Secret.new(new, PUK_MAX_TRIES if is_puk else PIN_MAX_TRIES)
        if is_puk:
            self._state.puk = replacement
        else:
            self._state.pin = replacement
        self._commit()
        if not is_puk:
            # Proving the old PIN is a verification (ISO 7816-4 CHANGE REFERENCE DATA).
            self._pin_verified = True
        return SW.OK.to_bytes(2, "big")

    def _reset_retry_counter(self, cmd: CommandAPDU) -> bytes:
        if cmd.p1 not in (0x00, 0x01):
            raise _Status(SW.INCORRECT_P1P2)
        if cmd.p2 != PIN_REF:
            raise _Status(SW.REFERENCED_DATA_NOT_FOUND)
        expected = PUK_LENGTH + PIN_LENGTH if cmd.p1 == 0x00 else PUK_LENGTH
        if len(cmd.data) != expected:
            raise _Status(SW.WRONG_LENGTH)
        self._user_state_check()
        puk_value = _digits(cmd.data[:PUK_LENGTH])
        new_pin = _digits(cmd.data[PUK_LENGTH:]) if cmd.p1 == 0x00 else None
        if puk_value is None or (cmd.p1 == 0x00 and new_pin is None):
            raise _Status(SW.WRONG_DATA)
        puk, pin = self._required(self._state.puk), self._required(self._state.pin)
        self._try_secret(puk, puk_value, is_puk=True)
        if new_pin is not None:
            self._state.pin = Secret.new(new_pin, PIN_MAX_TRIES)
        else:
            pin.tries_left = PIN_MAX_TRIES
        self._pin_verified = False
        self._commit()
        return SW.OK.to_bytes(2, "big")

    def _internal_authenticate(self, cmd: CommandAPDU) -> bytes:
        if (cmd.p1, cmd.p2) != (0, 0):
            raise _Status(SW.INCORRECT_P1P2)
        if not CHALLENGE_MIN <= len(cmd.data) <= CHALLENGE_MAX:
            raise _Status(SW.WRONG_LENGTH)
        if self._state.lifecycle != Lifecycle.OPERATIONAL:
            raise _Status(SW.CONDITIONS_NOT_SATISFIED)
        if not self._pin_verified:
            raise _Status(SW.SECURITY_STATUS_NOT_SATISFIED)
        message = auth_message(self._card_number(), cmd.data)
        return self._respond(self._sign(message), cmd.ne, repeatable=False)

    # --- proprietary commands ---------------------------------------------------------------

    def _sign_transaction(self, cmd: CommandAPDU) -> bytes:
        if (cmd.p1, cmd.p2) != (0, 0):
            raise _Status(SW.INCORRECT_P1P2)
        decoded = None
        try:
            decoded = decode_terminal_data(cmd.data)
        except TransactionFormatError:
            pass  # bad content: 6A80, but only after the life-cycle check (§3 order)
        except ValueError:
            raise _Status(SW.WRONG_LENGTH) from None
        state = self._state
        if state.lifecycle != Lifecycle.OPERATIONAL:
            raise _Status(SW.CONDITIONS_NOT_SATISFIED)
        if decoded is None:
            raise _Status(SW.WRONG_DATA)
        terminal_id, un, timestamp, amount = decoded
        if state.atc >= ATC_MAX:
            # An exhausted counter must never wrap: the card stops signing instead.
            raise _Status(SW.CONDITIONS_NOT_SATISFIED)
        state.atc += 1
        # The counter is on disk before any signature for it exists.
        self._commit()
        message = transaction_message(
            self._card_number(),
            state.atc,
            terminal_id,
            un,
            timestamp,
            amount,
            self._pin_verified,
        )
        body = encode_sign_response(state.atc, self._pin_verified, self._sign(message))
        return self._respond(body, cmd.ne, repeatable=False)

    def _generate_key_pair(self, cmd: CommandAPDU) -> bytes:
        if (cmd.p1, cmd.p2) != (0, 0):
            raise _Status(SW.INCORRECT_P1P2)
        if cmd.data:
            raise _Status(SW.WRONG_LENGTH)
        self._require_personalization()
        self._state.private_key = ec.generate_private_key(ec.SECP256R1())
        self._commit()
        point = public_key_to_point(self._state.private_key.public_key())
        return self._respond(point, cmd.ne, repeatable=False)

    def _check_put_data_header(self, cmd: CommandAPDU) -> Tag:
        if not self._selected:
            self._chain = None
            raise _Status(SW.CONDITIONS_NOT_SATISFIED)
        tag_value = (cmd.p1 << 8) | cmd.p2
        if tag_value not in WRITABLE_TAGS:
            self._chain = None
            raise _Status(SW.REFERENCED_DATA_NOT_FOUND)
        if self._state.lifecycle != Lifecycle.PERSONALIZATION:
            self._chain = None
            raise _Status(SW.CONDITIONS_NOT_SATISFIED)
        return Tag(tag_value)

    def _put_data(self, cmd: CommandAPDU) -> bytes:
        tag = self._check_put_data_header(cmd)
        value = cmd.data
        n = len(value)
        if tag == Tag.CARD_NUMBER:
            if n != CARD_NUMBER_LENGTH:
                raise _Status(SW.WRONG_LENGTH)
            digits = _digits(value)
            if digits is None or not is_valid_card_number(digits):
                raise _Status(SW.WRONG_DATA)
        elif tag in (Tag.HOLDER_NAME, Tag.CITIZEN_REF):
            limit = HOLDER_NAME_MAX if tag == Tag.HOLDER_NAME else CITIZEN_REF_MAX
            if not 1 <= n <= limit:
                raise _Status(SW.WRONG_LENGTH)
            if not _text_ok(value):
                raise _Status(SW.WRONG_DATA)
        elif tag in (Tag.VALID_FROM, Tag.VALID_UNTIL):
            if n != 8:
                raise _Status(SW.WRONG_LENGTH)
            try:
                decode_date(value)
            except ValueError:
                raise _Status(SW.WRONG_DATA) from None
        else:  # certificates
            if not 1 <= n <= CERTIFICATE_MAX:
                raise _Status(SW.WRONG_LENGTH)
            if not _der_sequence_ok(value):
                raise _Status(SW.WRONG_DATA)
        self._state.objects[tag] = value
        self._commit()
        return SW.OK.to_bytes(2, "big")

    def _set_pin_puk(self, cmd: CommandAPDU) -> bytes:
        if (cmd.p1, cmd.p2) != (0, 0):
            raise _Status(SW.INCORRECT_P1P2)
        if len(cmd.data) != PIN_LENGTH + PUK_LENGTH:
            raise _Status(SW.WRONG_LENGTH)
        self._require_personalization()
        pin, puk = _digits(cmd.data[:PIN_LENGTH]), _digits(cmd.data[PIN_LENGTH:])
        if pin is None or puk is None:
            raise _Status(SW.WRONG_DATA)
        self._state.pin = Secret.new(pin, PIN_MAX_TRIES)
        self._state.puk = Secret.new(puk, PUK_MAX_TRIES)
        self._commit()
        return SW.OK.to_bytes(2, "big")

    def _lock_card(self, cmd: CommandAPDU) -> bytes:
        if (cmd.p1, cmd.p2) != (0, 0):
            raise _Status(SW.INCORRECT_P1P2)
        if cmd.data:
            raise _Status(SW.WRONG_LENGTH)
        self._require_personalization()
        state = self._state
        complete = (
            state.private_key is not None
            and state.pin is not None
            and state.puk is not None
            and all(tag in state.objects for tag in WRITABLE_TAGS)
        )
        if not complete:
            raise _Status(SW.CONDITIONS_NOT_SATISFIED)
        if decode_date(state.objects[Tag.VALID_FROM]) > decode_date(state.objects[Tag.VALID_UNTIL]):
            raise _Status(SW.CONDITIONS_NOT_SATISFIED)
        state.lifecycle = Lifecycle.OPERATIONAL
        self._commit()
        return SW.OK.to_bytes(2, "big")

    # --- helpers ----------------------------------------------------------------------------

    @staticmethod
    def _required(value: _T | None) -> _T:
        """LOCK (and loading) guarantee PIN, PUK and key on a locked card; never crash if not."""
        if value is None:
            raise _Status(SW.CONDITIONS_NOT_SATISFIED)
        return value

    def _require_personalization(self) -> None:
        if self._state.lifecycle != Lifecycle.PERSONALIZATION:
            raise _Status(SW.CONDITIONS_NOT_SATISFIED)

    def _card_number(self) -> str:
        return self._state.objects[Tag.CARD_NUMBER].decode("ascii")

    def _sign(self, message: bytes) -> bytes:
        key = self._required(self._state.private_key)
        return signature_from_der(key.sign(message, ec.ECDSA(hashes.SHA256())))


# INS -> (required CLA without the chaining bit, handler); GET RESPONSE is handled in _process.
_COMMANDS: dict[int, tuple[int, Callable[[VirtualCard, CommandAPDU], bytes] | None]] = {
    Ins.SELECT: (CLA_ISO, VirtualCard._select),
    Ins.GET_DATA: (CLA_ISO, VirtualCard._get_data),
    Ins.GET_RESPONSE: (CLA_ISO, None),
    Ins.VERIFY: (CLA_ISO, VirtualCard._verify),
    Ins.CHANGE_REFERENCE_DATA: (CLA_ISO, VirtualCard._change_reference_data),
    Ins.RESET_RETRY_COUNTER: (CLA_ISO, VirtualCard._reset_retry_counter),
    Ins.INTERNAL_AUTHENTICATE: (CLA_ISO, VirtualCard._internal_authenticate),
    Ins.SIGN_TRANSACTION: (CLA_PROPRIETARY, VirtualCard._sign_transaction),
    Ins.GENERATE_KEY_PAIR: (CLA_PROPRIETARY, VirtualCard._generate_key_pair),
    Ins.PUT_DATA: (CLA_PROPRIETARY, VirtualCard._put_data),
    Ins.SET_PIN_PUK: (CLA_PROPRIETARY, VirtualCard._set_pin_puk),
    Ins.LOCK: (CLA_PROPRIETARY, VirtualCard._lock_card),
}


class VirtualReader:
    """The ``virtual`` backend: an in-process reader with a :class:`VirtualCard` inserted.

    Commands go through :meth:`VirtualCard.execute` as raw bytes and the same
    :func:`card_reader.apdu.exchange` logic the PC/SC reader uses.
    """

    def __init__(self, card: VirtualCard, name: str = "Virtual in-process reader") -> None:
        """Insert ``card`` and power it up."""
        self._card: VirtualCard | None = card
        self._name = name
        card.power_up()

    @property
    def name(self) -> str:
        """Reader name."""
        return self._name

    @property
    def card(self) -> VirtualCard:
        """The inserted card."""
        if self._card is None:
            raise VirtualCardStateError("reader is closed")
        return self._card

    def atr(self) -> bytes:
        """The card's ATR."""
        return self.card.atr()

    def transmit_raw(self, apdu: bytes) -> bytes:
        """Send raw APDU bytes; return raw response bytes (no 61xx/6Cxx handling)."""
        return self.card.execute(apdu)

    def transmit(self, command: CommandAPDU) -> ResponseAPDU:
        """Send a command, following ``61 xx`` and ``6C xx`` like a PC/SC terminal."""
        return exchange(self.transmit_raw, command)

    def reset(self) -> None:
        """Warm reset: a new card session."""
        self.card.reset()

    def close(self) -> None:
        """Power the card down."""
        if self._card is not None:
            self._card.power_down()
            self._card = None

    def __enter__(self) -> Self:
        """Use as a context manager."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close on exit."""
        self.close()
