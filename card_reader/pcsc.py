"""The ``pcsc`` backend: real readers through pyscard and the PC/SC service (pcscd).

This is the only module that imports pyscard (``smartcard``). It uses pyscard's thin
``smartcard.scard`` layer directly, so every PC/SC return code is mapped here to one of the
typed errors in :mod:`card_reader.errors`: :class:`PcscUnavailableError` (no pcscd),
:class:`NoReaderError`, :class:`NoCardError` (also for a wait that timed out) and
:class:`CardRemovedError`. pyscard's camelCase stays inside this module.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from typing import Self

from smartcard import scard

from card_reader.apdu import APDUFormatError
from card_reader.apdu import CommandAPDU
from card_reader.apdu import ResponseAPDU
from card_reader.apdu import exchange
from card_reader.errors import CardRemovedError
from card_reader.errors import NoCardError
from card_reader.errors import NoReaderError
from card_reader.errors import PcscError
from card_reader.errors import PcscUnavailableError

# pyscard hands back return codes as Python ints; compare them as unsigned 32-bit values.
_MASK = 0xFFFFFFFF
_SUCCESS = scard.SCARD_S_SUCCESS & _MASK
_NO_SERVICE = {scard.SCARD_E_NO_SERVICE & _MASK, scard.SCARD_E_SERVICE_STOPPED & _MASK}
_NO_READERS = scard.SCARD_E_NO_READERS_AVAILABLE & _MASK
_TIMEOUT = scard.SCARD_E_TIMEOUT & _MASK
_UNKNOWN_READER = {
    scard.SCARD_E_UNKNOWN_READER & _MASK,
    scard.SCARD_E_READER_UNAVAILABLE & _MASK,
}
_NO_CARD = {
    scard.SCARD_E_NO_SMARTCARD & _MASK,
    scard.SCARD_W_REMOVED_CARD & _MASK,
    scard.SCARD_W_UNPOWERED_CARD & _MASK,
    scard.SCARD_W_UNRESPONSIVE_CARD & _MASK,
}
_LOST_CARD = _NO_CARD | {scard.SCARD_W_RESET_CARD & _MASK}
_PNP_READER = "\\\\?PnP?\\Notification"
# Slice long waits so a removed reader or a stopped service is noticed within this time.
_WAIT_SLICE_MS = 1000
# vpcd and most readers poll card presence a few times per second.
_REMOVAL_GRACE = 1.0


def _message(hresult: int) -> str:
    return str(scard.SCardGetErrorMessage(hresult)).strip()


def _raise_common(hresult: int, action: str) -> None:
    """Raise the typed error for a failed PC/SC call (never returns normally)."""
    code = hresult & _MASK
    if code in _NO_SERVICE:
        raise PcscUnavailableError(
            "no PC/SC service: pcscd is not running or not reachable "
            f"({action}: {_message(hresult)})"
        )
    raise PcscError(f"{action} failed: {_message(hresult)}", code)


class _Context:
    """A PC/SC context (``SCardEstablishContext``), released on close."""

    def __init__(self) -> None:
        hresult, handle = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if hresult & _MASK != _SUCCESS:
            _raise_common(hresult, "SCardEstablishContext")
        self.handle: Any = handle

    def readers(self) -> list[str]:
        hresult, names = scard.SCardListReaders(self.handle, [])
        code = hresult & _MASK
        if code == _NO_READERS:
            return []
        if code != _SUCCESS:
            _raise_common(hresult, "SCardListReaders")
        return [str(name) for name in names]

    def states(self, names: list[str], timeout_ms: int, known: dict[str, int]) -> Any:
        """``SCardGetStatusChange``; returns [(name, event_state, atr)] or None on timeout."""
        request = [(name, known.get(name, scard.SCARD_STATE_UNAWARE)) for name in names]
        hresult, states = scard.SCardGetStatusChange(self.handle, timeout_ms, request)
        code = hresult & _MASK
        if code == _TIMEOUT:
            return None
        if code in _UNKNOWN_READER:
            # A reader went away between listing and waiting: let the caller list again.
            return []
        if code != _SUCCESS:
            _raise_common(hresult, "SCardGetStatusChange")
        return states

    def close(self) -> None:
        if self.handle is not None:
            scard.SCardReleaseContext(self.handle)
            self.handle = None


@dataclass(frozen=True)
class ReaderStatus:
    """A reader and whether a card is in it."""

    name: str
    card_present: bool
    atr: bytes


def list_readers() -> list[str]:
    """Names of the connected PC/SC readers (empty if none)."""
    ctx = _Context()
    try:
        return ctx.readers()
    finally:
        ctx.close()


def reader_status() -> list[ReaderStatus]:
    """Every reader with its card presence and ATR."""
    ctx = _Context()
    try:
        names = ctx.readers()
        if not names:
            return []
        states = ctx.states(names, 0, {}) or []
        return [
            ReaderStatus(
                str(name),
                bool(event & scard.SCARD_STATE_PRESENT) and not event & scard.SCARD_STATE_MUTE,
                bytes(atr),
            )
            for name, event, atr in states
        ]
    finally:
        ctx.close()


def wait_for_card(reader: str | None = None, timeout: float = 0.0) -> str:
    """Wait until a card is present (in ``reader``, or in any reader); return the reader name.

    ``timeout`` is in seconds; 0 checks once. Raises :class:`NoReaderError` if the named
    reader (or any reader) does not appear in time, and :class:`NoCardError` on timeout.
    """
    ctx = _Context()
    try:
        return _wait(ctx, reader, timeout, present=True)
    finally:
        ctx.close()


def wait_for_removal(reader: str, timeout: float = 0.0) -> bool:
    """Wait until ``reader`` is empty (or gone); return False if a card is still there."""
    ctx = _Context()
    try:
        try:
            _wait(ctx, reader, timeout, present=False)
        except (NoCardError, NoReaderError):
            return False
        return True
    finally:
        ctx.close()


def _wait(ctx: _Context, reader: str | None, timeout: float, *, present: bool) -> str:
    deadline = time.monotonic() + max(timeout, 0.0)
    known: dict[str, int] = {}
    while True:
        names = ctx.readers()
        watched = [n for n in names if reader is None or n == reader]
        states = ctx.states(watched, 0, {}) if watched else []
        for name, event, _atr in states or []:
            has_card = bool(event & scard.SCARD_STATE_PRESENT) and not (
                event & scard.SCARD_STATE_MUTE
            )
            if has_card == present:
                return str(name)
            known[str(name)] = event & ~scard.SCARD_STATE_CHANGED
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            if not watched:
                raise NoReaderError(
                    f"no reader named {reader!r}; readers: {', '.join(names) or 'none'}"
                    if reader
                    else "no smart card reader connected"
                )
            what = f"reader {reader!r}" if reader else "any reader"
            if present:
                raise NoCardError(f"no card in {what} (waited {timeout:g} s)")
            raise NoCardError(f"card still in {what} after {timeout:g} s")
        # Block until something changes (including readers coming and going), not a sleep.
        slice_ms = max(1, min(int(remaining * 1000), _WAIT_SLICE_MS))
        # The PnP pseudo-reader wakes us when readers are plugged in or out.
        ctx.states([*watched, _PNP_READER], slice_ms, known)


class PcscReader:
    """A connected card in a PC/SC reader (the ``pcsc`` backend)."""

    def __init__(self, reader: str | None = None, *, timeout: float = 0.0) -> None:
        """Wait up to ``timeout`` seconds for a card in ``reader`` (any if None) and connect."""
        self._ctx = _Context()
        self._card: Any = None
        try:
            self._name = _wait(self._ctx, reader, timeout, present=True)
            hresult, card, protocol = scard.SCardConnect(
                self._ctx.handle,
                self._name,
                scard.SCARD_SHARE_SHARED,
                scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
            )
            if hresult & _MASK != _SUCCESS:
                self._raise_connect(hresult)
            self._card = card
            self._protocol: int = protocol
        except BaseException:
            self._ctx.close()
            raise

    def _raise_connect(self, hresult: int) -> None:
        code = hresult & _MASK
        if code in _UNKNOWN_READER:
            raise NoReaderError(f"reader {self._name!r} is not available")
        if code in _NO_CARD:
            raise NoCardError(f"no usable card in {self._name!r}: {_message(hresult)}")
        _raise_common(hresult, f"connecting to {self._name!r}")

    @property
    def name(self) -> str:
        """The PC/SC reader name."""
        return self._name

    def _handle(self) -> Any:
        if self._card is None:
            raise CardRemovedError(f"not connected to a card in {self._name!r}")
        return self._card

    def _lost(self, hresult: int, action: str) -> None:
        code = hresult & _MASK
        if code in _LOST_CARD:
            self._card = None
            raise CardRemovedError(
                f"card in {self._name!r} was removed or reset ({action}: {_message(hresult)})"
            )
        if code in _UNKNOWN_READER:
            self._card = None
            raise NoReaderError(f"reader {self._name!r} went away ({action})")
        _raise_common(hresult, action)

    def atr(self) -> bytes:
        """The card's answer to reset."""
        hresult, _reader, _state, _protocol, atr = scard.SCardStatus(self._handle())
        if hresult & _MASK != _SUCCESS:
            self._lost(hresult, "SCardStatus")
        return bytes(atr)

    def transmit_raw(self, apdu: bytes) -> bytes:
        """Send raw APDU bytes; return raw response bytes (no 61xx/6Cxx handling).

        APDUs shorter than 4 bytes are refused here: pcscd rejects them, and vpcd would take a
        1-byte one for a control message.
        """
        if len(apdu) < 4:
            raise APDUFormatError(f"a command APDU has at least 4 bytes, got {len(apdu)}")
        pci = (
            scard.SCARD_PCI_T1
            if self._protocol == scard.SCARD_PROTOCOL_T1
            else (scard.SCARD_PCI_T0)
        )
        hresult, response = scard.SCardTransmit(self._handle(), pci, list(apdu))
        if hresult & _MASK != _SUCCESS:
            if hresult & _MASK not in _LOST_CARD | _NO_SERVICE | _UNKNOWN_READER:
                self._check_removed(hresult)
            self._lost(hresult, "SCardTransmit")
        return bytes(response)

    def _check_removed(self, hresult: int) -> None:
        """Tell "card pulled out mid-command" from other transmit failures.

        A card removed during a command usually fails the transfer ("transaction failed")
        before pcscd's presence poll notices; wait briefly for that poll to decide.
        """
        try:
            _wait(self._ctx, self._name, _REMOVAL_GRACE, present=False)
        except (NoCardError, NoReaderError):
            return
        self._card = None
        raise CardRemovedError(
            f"card in {self._name!r} was removed during the command ({_message(hresult)})"
        )

    def transmit(self, command: CommandAPDU) -> ResponseAPDU:
        """Send a command; ``61 xx`` is followed by GET RESPONSE, ``6C xx`` re-sent with Le=xx."""
        return exchange(self.transmit_raw, command)

    def reset(self) -> None:
        """Warm-reset the card (``SCardReconnect`` with ``SCARD_RESET_CARD``): a new session."""
        hresult, protocol = scard.SCardReconnect(
            self._handle(),
            scard.SCARD_SHARE_SHARED,
            scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
            scard.SCARD_RESET_CARD,
        )
        if hresult & _MASK != _SUCCESS:
            self._lost(hresult, "SCardReconnect")
        self._protocol = protocol

    def close(self) -> None:
        """Disconnect (powering the card down) and release the PC/SC context."""
        try:
            if self._card is not None:
                scard.SCardDisconnect(self._card, scard.SCARD_UNPOWER_CARD)
                self._card = None
        finally:
            self._ctx.close()

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
