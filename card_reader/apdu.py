"""ISO 7816-4 command and response APDUs, status words, and their typed exceptions.

``CommandAPDU`` encodes and parses all seven APDU cases (1, 2S, 3S, 4S, 2E, 3E, 4E).
``ResponseAPDU.check()`` turns a status word into a typed :class:`StatusWordError`.
:func:`exchange` is the terminal-side transport logic every reader backend shares: it
re-sends on ``6C xx`` and collects ``61 xx`` continuations with GET RESPONSE, so the in-process
reader and the PC/SC reader behave the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from card_reader.errors import CardReaderError
from card_reader.errors import CardResponseError

MAX_SHORT_NC = 255
MAX_SHORT_NE = 256
MAX_EXTENDED_NC = 65535
MAX_EXTENDED_NE = 65536


class APDUFormatError(CardReaderError, ValueError):
    """Bytes that are not a well-formed command APDU, or APDU fields out of range."""


class SW(IntEnum):
    """Fixed status words used by the citizen-card application (ISO 7816-4 section 5.6)."""

    OK = 0x9000
    SELECTED_FILE_DEACTIVATED = 0x6283
    MEMORY_FAILURE = 0x6581
    WRONG_LENGTH = 0x6700
    LAST_COMMAND_OF_CHAIN_EXPECTED = 0x6883
    COMMAND_CHAINING_NOT_SUPPORTED = 0x6884
    SECURITY_STATUS_NOT_SATISFIED = 0x6982
    AUTH_METHOD_BLOCKED = 0x6983
    CONDITIONS_NOT_SATISFIED = 0x6985
    WRONG_DATA = 0x6A80
    FILE_NOT_FOUND = 0x6A82
    NOT_ENOUGH_MEMORY = 0x6A84
    INCORRECT_P1P2 = 0x6A86
    REFERENCED_DATA_NOT_FOUND = 0x6A88
    WRONG_P1P2 = 0x6B00
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00
    NO_PRECISE_DIAGNOSIS = 0x6F00


_MEANINGS: dict[int, str] = {
    0x9000: "success",
    0x6281: "part of returned data may be corrupted",
    0x6282: "end of file reached before reading Ne bytes",
    0x6283: "selected file or application deactivated (card terminated)",
    0x6581: "memory failure",
    0x6700: "wrong length",
    0x6881: "logical channel not supported",
    0x6882: "secure messaging not supported",
    0x6883: "last command of the chain expected",
    0x6884: "command chaining not supported",
    0x6982: "security status not satisfied",
    0x6983: "authentication method blocked",
    0x6984: "reference data not usable",
    0x6985: "conditions of use not satisfied",
    0x6986: "command not allowed (no current EF)",
    0x6A80: "incorrect parameters in the data field",
    0x6A81: "function not supported",
    0x6A82: "file or application not found",
    0x6A84: "not enough memory space",
    0x6A86: "incorrect parameters P1-P2",
    0x6A88: "referenced data or reference data not found",
    0x6B00: "wrong parameters P1-P2",
    0x6D00: "instruction code not supported or invalid",
    0x6E00: "class not supported",
    0x6F00: "no precise diagnosis",
}


def sw_meaning(sw: int) -> str:
    """Return the ISO 7816-4 meaning of a status word, including the parametric ones."""
    sw1, sw2 = sw >> 8, sw & 0xFF
    if sw in _MEANINGS:
        return _MEANINGS[sw]
    if sw1 == 0x61:
        return f"{sw2 or 256} more response bytes available (GET RESPONSE)"
    if sw1 == 0x6C:
        return f"wrong Le; exact length is {sw2 or 256}"
    if sw1 == 0x63 and sw2 & 0xF0 == 0xC0:
        return f"verification failed, {sw2 & 0x0F} tries left"
    return "unknown status word"


class StatusWordError(CardReaderError):
    """The card answered with a status word other than ``90 00``."""

    def __init__(self, sw: int, data: bytes = b"") -> None:
        """Store the status word (and any response data) with its ISO meaning as message."""
        super().__init__(f"card answered {sw:04X}: {sw_meaning(sw)}")
        self.sw = sw
        self.data = data


class SelectedFileDeactivatedError(StatusWordError):
    """``62 83``: the application is deactivated (the card is terminated)."""


class MemoryFailureError(StatusWordError):
    """``65 81``: the card could not write its persistent memory."""


class WrongLengthError(StatusWordError):
    """``67 00``: Lc or Le is wrong for this command."""


class CommandChainingError(StatusWordError):
    """``68 83`` / ``68 84``: a command chain was broken or chaining is not allowed here."""


class SecurityStatusNotSatisfiedError(StatusWordError):
    """``69 82``: the command needs a verified PIN in this session."""


class AuthenticationBlockedError(StatusWordError):
    """``69 83``: the PIN (or PUK) is blocked."""


class ConditionsNotSatisfiedError(StatusWordError):
    """``69 85``: wrong life-cycle state, no application selected, or nothing to fetch."""


class WrongDataError(StatusWordError):
    """``6A 80``: the data field is malformed (bad PIN format, bad Luhn digit, bad UTF-8...)."""


class ApplicationNotFoundError(StatusWordError):
    """``6A 82``: SELECT named an application the card does not carry."""


class NotEnoughMemoryError(StatusWordError):
    """``6A 84``: the data does not fit."""


class IncorrectP1P2Error(StatusWordError):
    """``6A 86`` / ``6B 00``: P1 or P2 is not valid for this instruction."""


class ReferencedDataNotFoundError(StatusWordError):
    """``6A 88``: unknown data object tag or key/PIN reference, or the object is not written."""


class WrongLeError(StatusWordError):
    """``6C xx``: Le was wrong; ``exact_length`` is what the card has."""

    @property
    def exact_length(self) -> int:
        """The length the card asks the terminal to use as Le."""
        return (self.sw & 0xFF) or 256


class InsNotSupportedError(StatusWordError):
    """``6D 00``: unknown instruction."""


class ClaNotSupportedError(StatusWordError):
    """``6E 00``: class byte not supported (or not for this instruction)."""


class NoPreciseDiagnosisError(StatusWordError):
    """``6F 00``: the card failed internally."""


class VerificationFailedError(StatusWordError):
    """``63 Cx``: wrong PIN or PUK; ``tries_left`` more attempts before it blocks."""

    @property
    def tries_left(self) -> int:
        """Remaining attempts reported by the card (the low nibble of SW2)."""
        return self.sw & 0x0F


_ERRORS: dict[int, type[StatusWordError]] = {
    0x6283: SelectedFileDeactivatedError,
    0x6581: MemoryFailureError,
    0x6700: WrongLengthError,
    0x6883: CommandChainingError,
    0x6884: CommandChainingError,
    0x6982: SecurityStatusNotSatisfiedError,
    0x6983: AuthenticationBlockedError,
    0x6985: ConditionsNotSatisfiedError,
    0x6A80: WrongDataError,
    0x6A82: ApplicationNotFoundError,
    0x6A84: NotEnoughMemoryError,
    0x6A86: IncorrectP1P2Error,
    0x6A88: ReferencedDataNotFoundError,
    0x6B00: IncorrectP1P2Error,
    0x6D00: InsNotSupportedError,
    0x6E00: ClaNotSupportedError,
    0x6F00: NoPreciseDiagnosisError,
}


def error_for_sw(sw: int, data: bytes = b"") -> StatusWordError:
    """Build the typed exception for a non-success status word."""
    if sw >> 8 == 0x6C:
        return WrongLeError(sw, data)
    if sw & 0xFFF0 == 0x63C0:
        return VerificationFailedError(sw, data)
    return _ERRORS.get(sw, StatusWordError)(sw, data)


def _check_byte(name: str, value: int) -> None:
    if not 0 <= value <= 0xFF:
        raise APDUFormatError(f"{name} must be a byte, got {value}")


@dataclass(frozen=True)
class CommandAPDU:
    """A command APDU.

    ``ne`` is the maximum number of response bytes expected: 0 means "no Le field",
    256 is encoded as short Le ``00`` and 65536 as extended Le ``00 00``. The encoding is
    short unless a field needs extended length or ``extended`` is set.
    """

    cla: int
    ins: int
    p1: int = 0
    p2: int = 0
    data: bytes = b""
    ne: int = 0
    extended: bool = False

    def __post_init__(self) -> None:
        """Reject values that cannot be encoded."""
        for name in ("cla", "ins", "p1", "p2"):
            _check_byte(name, getattr(self, name))
        if len(self.data) > MAX_EXTENDED_NC:
            raise APDUFormatError(f"data too long for an APDU: {len(self.data)} bytes")
        if not 0 <= self.ne <= MAX_EXTENDED_NE:
            raise APDUFormatError(f"Ne out of range: {self.ne}")

    @property
    def is_extended(self) -> bool:
        """True when this APDU is (or must be) encoded with extended length fields."""
        return self.extended or len(self.data) > MAX_SHORT_NC or self.ne > MAX_SHORT_NE

    def to_bytes(self) -> bytes:
        """Encode as ISO 7816-4 bytes (cases 1, 2S, 3S, 4S, 2E, 3E, 4E)."""
        out = bytearray((self.cla, self.ins, self.p1, self.p2))
        nc = len(self.data)
        if not self.is_extended:
            if nc:
                out.append(nc)
                out += self.data
            if self.ne:
                out.append(self.ne & 0xFF)
            return bytes(out)
        if nc == 0 and self.ne == 0:
            return bytes(out)
        out.append(0)
        if nc:
            out += nc.to_bytes(2, "big")
            out += self.data
        if self.ne:
            out += (self.ne & 0xFFFF).to_bytes(2, "big")
        return bytes(out)

    def __bytes__(self) -> bytes:
        """Same as :meth:`to_bytes`."""
        return self.to_bytes()

    @classmethod
    def from_bytes(cls, raw: bytes) -> CommandAPDU:
        """Parse command APDU bytes; raise :class:`APDUFormatError` when Lc/Le do not add up."""
        n = len(raw)
        if n < 4:
            raise APDUFormatError(f"an APDU has at least 4 bytes, got {n}")
        cla, ins, p1, p2 = raw[0], raw[1], raw[2], raw[3]
        if n == 4:
            return cls(cla, ins, p1, p2)
        b4 = raw[4]
        if n == 5:
            return cls(cla, ins, p1, p2, ne=b4 or MAX_SHORT_NE)
        if b4 != 0:
            if n == 5 + b4:
                return cls(cla, ins, p1, p2, data=bytes(raw[5:]))
            if n == 6 + b4:
                return cls(cla, ins, p1, p2, data=bytes(raw[5:-1]), ne=raw[-1] or MAX_SHORT_NE)
            raise APDUFormatError(f"short Lc={b4} does not match APDU length {n}")
        if n < 7:
            raise APDUFormatError(f"truncated extended length field (APDU length {n})")
        first = int.from_bytes(raw[5:7], "big")
        if n == 7:
            return cls(cla, ins, p1, p2, ne=first or MAX_EXTENDED_NE, extended=True)
        if first == 0:
            raise APDUFormatError("extended Lc must not be zero")
        if n == 7 + first:
            return cls(cla, ins, p1, p2, data=bytes(raw[7:]), extended=True)
        if n == 9 + first:
            le = int.from_bytes(raw[-2:], "big")
            return cls(
                cla, ins, p1, p2, data=bytes(raw[7:-2]), ne=le or MAX_EXTENDED_NE, extended=True
            )
        raise APDUFormatError(f"extended Lc={first} does not match APDU length {n}")

    def __str__(self) -> str:
        """Hex dump, as in card traces."""
        return self.to_bytes().hex(" ").upper()


@dataclass(frozen=True)
class ResponseAPDU:
    """A response APDU: data followed by the status word SW1 SW2."""

    data: bytes
    sw1: int
    sw2: int

    def __post_init__(self) -> None:
        """Reject status bytes outside 0..255."""
        _check_byte("sw1", self.sw1)
        _check_byte("sw2", self.sw2)

    @classmethod
    def from_bytes(cls, raw: bytes) -> ResponseAPDU:
        """Split raw response bytes into data and status word."""
        if len(raw) < 2:
            raise CardResponseError(f"a response APDU has at least 2 bytes, got {len(raw)}")
        return cls(bytes(raw[:-2]), raw[-2], raw[-1])

    @classmethod
    def status(cls, sw: int, data: bytes = b"") -> ResponseAPDU:
        """Build a response from a 16-bit status word."""
        return cls(data, sw >> 8, sw & 0xFF)

    @property
    def sw(self) -> int:
        """The 16-bit status word."""
        return (self.sw1 << 8) | self.sw2

    @property
    def ok(self) -> bool:
        """True for ``90 00``."""
        return self.sw == SW.OK

    def to_bytes(self) -> bytes:
        """Encode as data || SW1 || SW2."""
        return self.data + bytes((self.sw1, self.sw2))

    def __bytes__(self) -> bytes:
        """Same as :meth:`to_bytes`."""
        return self.to_bytes()

    def check(self, *allowed: int) -> ResponseAPDU:
        """Return self on ``90 00`` (or one of ``allowed``); raise the typed error otherwise."""
        if self.ok or self.sw in allowed:
            return self
        raise error_for_sw(self.sw, self.data)

    def __str__(self) -> str:
        """Hex dump with the status word separated."""
        body = self.data.hex(" ").upper()
        return f"{body} [{self.sw:04X}]" if body else f"[{self.sw:04X}]"


GET_RESPONSE_INS = 0xC0
# A card that keeps answering 61 xx forever would hang the terminal: 64 KiB / 256 B = 256 rounds.
_MAX_GET_RESPONSE_ROUNDS = 257


def exchange(send: Callable[[bytes], bytes], command: CommandAPDU) -> ResponseAPDU:
    """Send ``command`` through ``send`` (raw bytes in, raw bytes out), ISO 7816-4 style.

    ``6C xx`` re-sends the same command once with Le = xx (cards only use it for commands
    that are safe to repeat); ``61 xx`` is followed by GET RESPONSE until the card has
    delivered everything. The returned response carries the concatenated data and the
    final status word.
    """
    response = ResponseAPDU.from_bytes(send(command.to_bytes()))
    if response.sw1 == 0x6C:
        retry = CommandAPDU(
            command.cla,
            command.ins,
            command.p1,
            command.p2,
            command.data,
            ne=response.sw2 or MAX_SHORT_NE,
            extended=command.extended,
        )
        response = ResponseAPDU.from_bytes(send(retry.to_bytes()))
    data = response.data
    rounds = 0
    while response.sw1 == 0x61:
        rounds += 1
        if rounds > _MAX_GET_RESPONSE_ROUNDS:
            raise CardResponseError("card kept answering 61 xx; response chain too long")
        get_response = CommandAPDU(0x00, GET_RESPONSE_INS, 0, 0, ne=response.sw2 or MAX_SHORT_NE)
        response = ResponseAPDU.from_bytes(send(get_response.to_bytes()))
        data += response.data
    return ResponseAPDU(data, response.sw1, response.sw2)
