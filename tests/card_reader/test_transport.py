"""PC/SC transport errors and the vpcd bridge protocol.

The vpcd framing is tested against a stand-in vpcd listener (no pcscd needed); the PC/SC
errors ("no service", "no reader", "no card", "card removed") against the real stack.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from card_reader import open_reader
from card_reader.apdu import APDUFormatError
from card_reader.card import CitizenCardClient
from card_reader.errors import CardRemovedError
from card_reader.errors import NoCardError
from card_reader.errors import NoReaderError
from card_reader.errors import TransportError
from card_reader.protocol import AID
from card_reader.protocol import ATR
from card_reader.virtual import VirtualCard
from card_reader.vpcd import VpcdBridge
from card_reader.vpcd import vpcd_reader_name
from tests.card_reader.helpers import VPCD_BASE_PORT
from tests.card_reader.helpers import PcscStack
from tests.card_reader.helpers import pcsc_unavailable

REPO_ROOT = Path(__file__).resolve().parents[2]
SELECT = bytes.fromhex("00A4040009") + AID + b"\x00"


# --- vpcd framing, against a stand-in vpcd --------------------------------------------------


class FakeVpcd:
    """Plays vpcd's side of the socket: listens, then sends framed requests."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.conn: socket.socket | None = None

    def accept(self) -> None:
        self.server.settimeout(5)
        self.conn, _ = self.server.accept()
        self.conn.settimeout(5)

    def send(self, payload: bytes) -> None:
        assert self.conn is not None
        # Two writes, as bookworm's vpcd does: the bridge must reassemble them.
        self.conn.sendall(struct.pack(">H", len(payload)))
        self.conn.sendall(payload)

    def receive(self) -> bytes:
        assert self.conn is not None
        header = self._exactly(2)
        return self._exactly(struct.unpack(">H", header)[0])

    def _exactly(self, n: int) -> bytes:
        assert self.conn is not None
        data = b""
        while len(data) < n:
            chunk = self.conn.recv(n - len(data))
            assert chunk, "bridge closed the connection"
            data += chunk
        return data

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.server.close()


@pytest.fixture
def fake_vpcd() -> Iterator[FakeVpcd]:
    vpcd = FakeVpcd()
    try:
        yield vpcd
    finally:
        vpcd.close()


def test_bridge_speaks_the_vpcd_protocol(fake_vpcd: FakeVpcd) -> None:
    card = VirtualCard()
    bridge = VpcdBridge(card, port=fake_vpcd.port)
    bridge.start()
    try:
        fake_vpcd.accept()
        fake_vpcd.send(b"\x04")
        assert fake_vpcd.receive() == ATR
        fake_vpcd.send(b"\x01")  # power on: no answer expected
        fake_vpcd.send(SELECT)
        assert fake_vpcd.receive()[-2:] == b"\x90\x00"
        fake_vpcd.send(bytes.fromhex("00CA9F3604"))
        assert fake_vpcd.receive() == bytes(4) + b"\x90\x00"
        fake_vpcd.send(b"\x02")  # reset: the session is gone
        fake_vpcd.send(bytes.fromhex("00CA9F3604"))
        assert fake_vpcd.receive() == b"\x69\x85"
        fake_vpcd.send(SELECT)
        fake_vpcd.receive()
        fake_vpcd.send(b"\x00")  # power off
        fake_vpcd.send(bytes.fromhex("00CA9F3604"))
        assert fake_vpcd.receive() == b"\x69\x85"
        fake_vpcd.send(b"\x80")  # a 1-byte "APDU" is answered, not left hanging
        assert fake_vpcd.receive() == b"\x67\x00"
        big = bytes.fromhex("80DADF10 00 0400") + b"\x30\x82\x03\xfc" + bytes(1020)
        fake_vpcd.send(big)  # extended length through the framing
        assert fake_vpcd.receive() == b"\x69\x85"  # (not selected after power-off)
    finally:
        bridge.stop()
    assert fake_vpcd.conn is not None
    assert fake_vpcd.conn.recv(1) == b""  # stop() closed the socket: card removed


def test_bridge_swaps_cards(fake_vpcd: FakeVpcd) -> None:
    bridge = VpcdBridge(VirtualCard(), port=fake_vpcd.port)
    with bridge:
        fake_vpcd.accept()
        fake_vpcd.send(SELECT)
        assert fake_vpcd.receive()[-2:] == b"\x90\x00"
        other = VirtualCard()
        bridge.swap_card(other)
        assert bridge.card is other
        fake_vpcd.send(bytes.fromhex("00CA9F3604"))
        assert fake_vpcd.receive() == b"\x69\x85"  # the new card has no session yet


def test_bridge_ends_when_vpcd_closes(fake_vpcd: FakeVpcd) -> None:
    bridge = VpcdBridge(VirtualCard(), port=fake_vpcd.port)
    bridge.connect()
    thread = threading.Thread(target=bridge.serve)
    thread.start()
    fake_vpcd.accept()
    assert fake_vpcd.conn is not None
    fake_vpcd.conn.sendall(b"\x00")  # half a header, then hang up
    fake_vpcd.conn.close()
    fake_vpcd.conn = None
    thread.join(5)
    assert not thread.is_alive()


def test_bridge_without_vpcd_is_a_clear_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    bridge = VpcdBridge(VirtualCard(), port=port)
    with pytest.raises(TransportError, match="cannot reach vpcd"):
        bridge.start()


def test_reader_names_follow_ports() -> None:
    assert vpcd_reader_name(29563) == "Virtual PCD 00 00"
    assert vpcd_reader_name(29564) == "Virtual PCD 00 01"


# --- no PC/SC service at all ----------------------------------------------------------------


def test_no_pcsc_service_is_a_typed_error() -> None:
    """Point libpcsclite at a socket nobody listens on: works with or without pcscd."""
    code = """
from card_reader import open_reader, pcsc
from card_reader.errors import PcscUnavailableError
for call in (pcsc.list_readers, pcsc.reader_status, lambda: pcsc.wait_for_card(None, 0),
             lambda: open_reader("pcsc", timeout=0)):
    try:
        call()
    except PcscUnavailableError as exc:
        assert "pcscd is not running" in str(exc), exc
    else:
        raise SystemExit("no PcscUnavailableError")
print("ok")
"""
    env = {
        **os.environ,
        "PCSCLITE_CSOCK_NAME": "/nonexistent/pcscd.comm",
        "PYTHONPATH": str(REPO_ROOT),
    }
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# --- through the real PC/SC stack -----------------------------------------------------------


@dataclass
class Slot:
    name: str
    port: int


@pytest.fixture
def spare_slot(pcsc_stack: PcscStack) -> Slot:
    """A free vpcd slot other than the one the session's harness holds."""
    from card_reader import pcsc

    for name in pcsc.list_readers():
        if not name.startswith("Virtual PCD") or name == pcsc_stack.reader_name:
            continue
        # A previous test may have just removed its card; pcscd notices within ~0.4 s.
        if pcsc.wait_for_removal(name, 2):
            return Slot(name, VPCD_BASE_PORT + int(name.split()[-1]))
    pcsc_unavailable("needs a second free 'Virtual PCD' slot")
    raise AssertionError("unreachable")


@pytest.mark.pcsc
def test_readers_and_status(pcsc_stack: PcscStack) -> None:
    from card_reader import pcsc

    assert pcsc_stack.reader_name in pcsc.list_readers()
    status = {s.name: s for s in pcsc.reader_status()}
    assert status[pcsc_stack.reader_name].card_present
    assert status[pcsc_stack.reader_name].atr == ATR
    assert pcsc.wait_for_card(None, 1) in status


@pytest.mark.pcsc
def test_no_card_and_no_reader(spare_slot: Slot) -> None:
    from card_reader import pcsc

    start = time.monotonic()
    with pytest.raises(NoCardError, match="no card"):
        pcsc.PcscReader(spare_slot.name, timeout=0.3)
    assert time.monotonic() - start >= 0.3
    with pytest.raises(NoCardError):
        pcsc.wait_for_card(spare_slot.name, 0)
    with pytest.raises(NoReaderError, match="no reader named"):
        pcsc.PcscReader("No Such Reader 00 00", timeout=0.2)
    with pytest.raises(NoReaderError):
        open_reader("vpcd", card=VirtualCard(), port=spare_slot.port, reader="Nope")


@pytest.mark.pcsc
def test_insert_then_remove_the_card(spare_slot: Slot) -> None:
    from card_reader import pcsc

    bridge = VpcdBridge(VirtualCard(), port=spare_slot.port)
    bridge.start()
    try:
        assert pcsc.wait_for_card(spare_slot.name, 3) == spare_slot.name
        reader = pcsc.PcscReader(spare_slot.name, timeout=1)
    except BaseException:
        bridge.stop()
        raise
    try:
        assert reader.atr() == ATR
        assert reader.transmit_raw(SELECT)[-2:] == b"\x90\x00"
        with pytest.raises(APDUFormatError, match="at least 4 bytes"):
            reader.transmit_raw(b"\x80")  # vpcd would take it for a control byte
        bridge.stop()  # pull the card out
        with pytest.raises(CardRemovedError, match="removed"):
            reader.transmit_raw(SELECT)
        with pytest.raises(CardRemovedError):
            reader.transmit_raw(SELECT)  # the session stays dead
        assert pcsc.wait_for_removal(spare_slot.name, 2)
    finally:
        reader.close()
        bridge.stop()


@pytest.mark.pcsc
def test_vpcd_backend_end_to_end_and_busy_slot(spare_slot: Slot) -> None:
    card = VirtualCard()
    with open_reader("vpcd", card=card, port=spare_slot.port, timeout=3) as reader:
        assert reader.name == spare_slot.name
        client = CitizenCardClient(reader)
        client.select()
        assert client.status().lifecycle.name == "PERSONALIZATION"
        with pytest.raises(TransportError, match="already holds a card"):
            open_reader("vpcd", card=VirtualCard(), port=spare_slot.port)
    from card_reader import pcsc

    # close() waited for pcscd to see the removal: the slot is free again.
    assert not any(s.card_present for s in pcsc.reader_status() if s.name == spare_slot.name)
