"""Citizen-card reader layer: the card application, a virtual card, PC/SC, and the terminal.

Every backend implements :class:`CardReader`; :func:`open_reader` picks one by name:

- ``virtual``: a :class:`~card_reader.virtual.VirtualCard` in this process;
- ``pcsc``: a real card in a PC/SC reader (pyscard + pcscd);
- ``vpcd``: a virtual card served to pcscd through vsmartcard's vpcd driver, reached through
  PC/SC like a real card.

This package imports neither Flask nor ``citizen_card``; the server may import it (notably
:mod:`card_reader.protocol`).
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import TYPE_CHECKING
from typing import Protocol
from typing import Self
from typing import runtime_checkable

from card_reader.apdu import CommandAPDU
from card_reader.apdu import ResponseAPDU
from card_reader.errors import CardReaderError

if TYPE_CHECKING:
    from card_reader.virtual import VirtualCard

__all__ = ["BACKENDS", "CardReader", "open_reader"]

BACKENDS = ("virtual", "pcsc", "vpcd")


@runtime_checkable
class CardReader(Protocol):
    """A card in a reader, whatever the backend."""

    @property
    def name(self) -> str:
        """Human-readable reader name."""
        ...

    def atr(self) -> bytes:
        """The card's answer to reset."""
        ...

    def transmit(self, command: CommandAPDU) -> ResponseAPDU:
        """Send a command; ``61 xx`` and ``6C xx`` are handled, other status words returned."""
        ...

    def transmit_raw(self, apdu: bytes) -> bytes:
        """Send raw APDU bytes and return the raw response, with no status-word handling."""
        ...

    def reset(self) -> None:
        """Warm-reset the card: a new session (selection and PIN verification are lost)."""
        ...

    def close(self) -> None:
        """Release the card and the reader."""
        ...

    def __enter__(self) -> Self:
        """Enter a ``with`` block."""
        ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close when leaving the ``with`` block."""
        ...


def open_reader(
    backend: str,
    *,
    card: VirtualCard | str | os.PathLike[str] | None = None,
    reader: str | None = None,
    port: int | None = None,
    host: str = "127.0.0.1",
    timeout: float = 5.0,
) -> CardReader:
    """Open a card reader.

    ``virtual`` and ``vpcd`` need ``card`` (a :class:`VirtualCard` or its JSON state file);
    ``pcsc`` takes an optional ``reader`` name (default: the first reader holding a card) and
    waits up to ``timeout`` seconds for a card; ``vpcd`` also takes the vpcd ``port``.
    """
    if backend == "virtual":
        from card_reader.virtual import VirtualCard
        from card_reader.virtual import VirtualReader

        if card is None:
            raise CardReaderError("the virtual backend needs a card (a VirtualCard or a file)")
        virtual = card if isinstance(card, VirtualCard) else VirtualCard.load(os.fspath(card))
        return VirtualReader(virtual)
    if backend == "pcsc":
        from card_reader.pcsc import PcscReader

        return PcscReader(reader, timeout=timeout)
    if backend == "vpcd":
        from card_reader.virtual import VirtualCard
        from card_reader.vpcd import VPCD_PORT
        from card_reader.vpcd import VpcdReader

        if card is None:
            raise CardReaderError("the vpcd backend needs a card (a VirtualCard or a file)")
        served = card if isinstance(card, VirtualCard) else VirtualCard.load(os.fspath(card))
        return VpcdReader(
            served,
            port=VPCD_PORT if port is None else port,
            host=host,
            reader=reader,
            timeout=timeout,
        )
    raise CardReaderError(f"unknown card reader backend {backend!r}; use one of {BACKENDS}")
