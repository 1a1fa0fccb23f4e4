"""Exceptions shared by every card_reader layer.

Status-word exceptions live in :mod:`card_reader.apdu`; this module holds the base class and the
transport errors, so callers can catch "no reader" or "card removed" without importing pyscard.
"""

from __future__ import annotations


class CardReaderError(Exception):
    """Base class of every error raised by card_reader."""


class TransportError(CardReaderError):
    """The APDU could not be exchanged with the card (reader, service or link failure)."""


class PcscUnavailableError(TransportError):
    """No PC/SC service: pcscd is not running or not reachable."""


class NoReaderError(TransportError):
    """The requested reader does not exist (or no reader is connected at all)."""


class NoCardError(TransportError):
    """No card is present in the reader (also raised when waiting for a card times out)."""


class CardRemovedError(TransportError):
    """The card was removed or reset during the session; the session state is lost."""


class PcscError(TransportError):
    """Any other PC/SC failure, with the PC/SC return code."""

    def __init__(self, message: str, hresult: int) -> None:
        """Keep the PC/SC return code for logs and for callers that branch on it."""
        super().__init__(f"{message} (PC/SC 0x{hresult & 0xFFFFFFFF:08X})")
        self.hresult = hresult & 0xFFFFFFFF


class CardResponseError(CardReaderError):
    """The card answered something that does not follow the protocol (bad length, bad data)."""


class SignatureError(CardReaderError):
    """A card signature does not verify against the given public key."""


class TransactionFormatError(CardReaderError, ValueError):
    """A signed transaction (or its JSON form) has a missing or out-of-range field."""


class VirtualCardStateError(CardReaderError):
    """A virtual card state file is missing, unreadable or inconsistent."""
