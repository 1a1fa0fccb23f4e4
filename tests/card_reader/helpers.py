"""Shared constants and helpers of the card tests (fixtures live in conftest.py)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from card_reader import CardReader
from card_reader.apdu import CommandAPDU
from card_reader.card import CitizenCardClient
from card_reader.issuer import Issuer
from card_reader.virtual import VirtualCard
from card_reader.virtual import VirtualReader

PIN = "123456"
PUK = "12345678"
CARD_NUMBER = "6200000000000012344"
HOLDER = "Zhang San 张三"
CITIZEN_REF = "CITIZEN-0001"
VALID_FROM = date(2025, 1, 1)
VALID_UNTIL = date(2030, 12, 31)

VPCD_BASE_PORT = int(os.environ.get("CARD_READER_VPCD_PORT", "29563"))


def require_pcsc() -> bool:
    """True when PC/SC tests must run (CI): unavailability is then a failure, not a skip."""
    return os.environ.get("REQUIRE_PCSC") == "1"


def pcsc_unavailable(reason: str) -> None:
    """Skip (locally) or fail (REQUIRE_PCSC=1) because the PC/SC stack is missing."""
    message = f"PC/SC stack unavailable: {reason} (start it with: bash .ci/pcscd.sh)"
    if require_pcsc():
        pytest.fail(f"REQUIRE_PCSC=1 but {message}", pytrace=False)
    pytest.skip(message)


def free_vpcd_slots() -> list[tuple[str, int]]:
    """Empty "Virtual PCD" readers and their vpcd ports; skips/fails if PC/SC is missing."""
    from card_reader.errors import CardReaderError

    problem = None
    try:
        from card_reader import pcsc

        statuses = pcsc.reader_status()
    except ImportError as exc:  # pragma: no cover - pyscard is a runtime requirement
        problem = f"pyscard not importable ({exc})"
    except CardReaderError as exc:
        problem = str(exc)
    if problem is not None:
        # Outside the except block, so the report shows one reason, not a chained traceback.
        pcsc_unavailable(problem)
    slots = []
    for status in statuses:
        name = status.name
        if not name.startswith("Virtual PCD"):
            continue
        # A card removed a moment ago (previous run) shows until pcscd's next presence poll.
        if not status.card_present or pcsc.wait_for_removal(name, 1.0):
            slots.append((name, VPCD_BASE_PORT + int(name.split()[-1])))
    if not slots:
        names = ", ".join(s.name for s in statuses) or "none"
        pcsc_unavailable(f"no free 'Virtual PCD' reader (readers: {names})")
    return slots


@dataclass
class PcscStack:
    """A bridge and a PC/SC connection kept for the whole session (insertion polling is slow)."""

    bridge: object
    reader: CardReader
    reader_name: str
    port: int


class CardHarness:
    """A reader with a swappable virtual card, for either backend."""

    def __init__(self, backend: str, stack: PcscStack | None) -> None:
        """``stack`` is the PC/SC session stack for the pcsc backend, None for virtual."""
        self.backend = backend
        self._stack = stack
        self._card = VirtualCard()
        self._reader: CardReader | None = None

    def insert(self, card: VirtualCard) -> None:
        """Put ``card`` in the reader; it starts a fresh session (as after power-up)."""
        self._card = card
        if self._stack is None:
            if self._reader is not None:
                self._reader.close()
            self._reader = VirtualReader(card)
            return
        from card_reader.vpcd import VpcdBridge

        bridge = self._stack.bridge
        assert isinstance(bridge, VpcdBridge)
        bridge.swap_card(card)
        self._stack.reader.reset()
        self._reader = self._stack.reader

    @property
    def card(self) -> VirtualCard:
        """The inserted card (for state assertions only; commands go through the reader)."""
        return self._card

    @property
    def reader(self) -> CardReader:
        """The reader the card is in."""
        assert self._reader is not None, "insert a card first"
        return self._reader

    @property
    def client(self) -> CitizenCardClient:
        """A high-level client over the reader."""
        return CitizenCardClient(self.reader)

    def raw(self, apdu: bytes | str | CommandAPDU) -> bytes:
        """Send raw bytes (hex strings allowed, spaces ignored); return raw response bytes."""
        if isinstance(apdu, str):
            apdu = bytes.fromhex(apdu.replace(" ", ""))
        elif isinstance(apdu, CommandAPDU):
            apdu = apdu.to_bytes()
        return self.reader.transmit_raw(apdu)

    def sw(self, apdu: bytes | str | CommandAPDU) -> int:
        """Send raw bytes and return only the status word."""
        response = self.raw(apdu)
        return int.from_bytes(response[-2:], "big")

    def close(self) -> None:
        """Release the in-process reader (the PC/SC one lives for the session)."""
        if self._stack is None and self._reader is not None:
            self._reader.close()


@dataclass
class Issued:
    """A personalized and locked card in a harness, with what the issuer knows about it."""

    h: CardHarness
    public_key: ec.EllipticCurvePublicKey
    issuer: Issuer
