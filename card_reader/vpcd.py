"""Serve a :class:`VirtualCard` to pcscd through vsmartcard's ``vpcd`` reader driver.

The card is the TCP client; vpcd (loaded by pcscd) listens, by default on port 29563 for the
reader "Virtual PCD 00 00" and 29564 for "... 00 01" (see ``.ci/pcscd.sh``). Every message in
both directions is a 2-byte big-endian length and a payload. A 1-byte payload from vpcd is a
control message: ``00`` power off, ``01`` power on, ``02`` reset (no answer) and ``04`` "send
the ATR" (also vpcd's presence poll). Longer payloads are command APDUs, answered with the
response APDU. Connecting inserts the card; closing the socket removes it.

vpcd listens on all interfaces: anyone who can reach the port can insert a card. Use it on a
test machine, not on a shared host.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
from pathlib import Path
from types import TracebackType
from typing import Self

from card_reader.apdu import CommandAPDU
from card_reader.apdu import ResponseAPDU
from card_reader.errors import NoReaderError
from card_reader.errors import TransportError
from card_reader.virtual import VirtualCard

log = logging.getLogger(__name__)

#: Port of the first vpcd slot in our pcscd config (not vpcd's stock 35963, which lies in
#: Linux's ephemeral port range and is sometimes taken by an outgoing connection).
VPCD_PORT = 29563
VPCD_READER_PREFIX = "Virtual PCD"

_POWER_OFF = 0x00
_POWER_ON = 0x01
_RESET = 0x02
_GET_ATR = 0x04


def vpcd_reader_name(port: int, base_port: int = VPCD_PORT) -> str:
    """The PC/SC reader name pcscd gives the vpcd slot listening on ``port``."""
    return f"{VPCD_READER_PREFIX} 00 {port - base_port:02d}"


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    """Read exactly ``size`` bytes; None when the peer closed the connection."""
    chunks = bytearray()
    while len(chunks) < size:
        if hasattr(socket, "TCP_QUICKACK"):
            # vpcd writes the length and the payload separately; without an immediate ACK the
            # second write waits for Linux's delayed ACK (~40 ms per APDU). The kernel clears
            # this flag after use, hence before every recv.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


class VpcdBridge:
    """Connects a :class:`VirtualCard` to vpcd and answers its requests.

    Use :meth:`start` / :meth:`stop` to run it in a background thread (tests, the ``vpcd``
    backend) or :meth:`serve_forever` in the foreground (``python -m card_reader vpcd``).
    """

    def __init__(self, card: VirtualCard, *, host: str = "127.0.0.1", port: int = VPCD_PORT):
        """Prepare to insert ``card`` into the vpcd slot at ``host:port``."""
        self._card = card
        self._host = host
        self._port = port
        self._card_lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def port(self) -> int:
        """The vpcd port this bridge connects to."""
        return self._port

    @property
    def card(self) -> VirtualCard:
        """The card currently served."""
        with self._card_lock:
            return self._card

    def swap_card(self, card: VirtualCard) -> None:
        """Serve another card from the next message on, without a TCP reconnect.

        pcscd does not notice; callers reset the PC/SC connection afterwards so the new card
        starts a fresh session. Tests use this to avoid vpcd's ~0.4 s insertion polling.
        """
        with self._card_lock:
            self._card = card
            card.power_up()

    def connect(self) -> None:
        """Open the TCP connection to vpcd (this "inserts" the card)."""
        try:
            sock = socket.create_connection((self._host, self._port), timeout=5)
        except OSError as exc:
            raise TransportError(
                f"cannot reach vpcd at {self._host}:{self._port} ({exc.strerror or exc}); "
                "is pcscd running with the vpcd reader config (.ci/pcscd.sh)?"
            ) from exc
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock

    def _handle(self, payload: bytes) -> bytes | None:
        with self._card_lock:
            card = self._card
            if len(payload) == 1:
                code = payload[0]
                if code == _POWER_OFF:
                    card.power_down()
                    return None
                if code == _POWER_ON:
                    card.power_up()
                    return None
                if code == _RESET:
                    card.reset()
                    return None
                if code == _GET_ATR:
                    return card.atr()
                # Not a control code: vpcd relayed a 1-byte "APDU"; answer it as one (67 00)
                # rather than leaving pcscd waiting forever.
            return card.execute(payload)

    def serve(self) -> None:
        """Answer vpcd until the connection closes or :meth:`stop` is called."""
        sock = self._sock
        if sock is None:
            raise TransportError("bridge is not connected; call connect() first")
        try:
            while not self._stopping.is_set():
                header = _recv_exact(sock, 2)
                if header is None:
                    break
                (size,) = struct.unpack(">H", header)
                payload = _recv_exact(sock, size) if size else b""
                if payload is None:
                    break
                answer = self._handle(payload)
                if answer is not None:
                    # One send for length and payload: no Nagle/delayed-ACK interplay.
                    sock.sendall(struct.pack(">H", len(answer)) + answer)
        except OSError:
            if not self._stopping.is_set():
                log.warning("vpcd connection on port %d lost", self._port)
        finally:
            self._close_socket()

    def serve_forever(self, *, retry_interval: float = 1.0) -> None:
        """Serve, reconnecting whenever vpcd goes away (pcscd restart), until :meth:`stop`."""
        warned = False
        while not self._stopping.is_set():
            try:
                self.connect()
            except TransportError as exc:
                # Say it once; pcscd may simply not be started yet.
                log.log(logging.DEBUG if warned else logging.WARNING, "%s; retrying", exc)
                warned = True
                self._stopping.wait(retry_interval)
                continue
            warned = False
            log.info("card inserted into vpcd slot on port %d", self._port)
            self.serve()
            if not self._stopping.is_set():
                log.info("vpcd closed the connection; reconnecting")

    def start(self) -> None:
        """Connect and serve in a daemon thread."""
        self._stopping.clear()
        self.connect()
        self._thread = threading.Thread(
            target=self.serve, name=f"vpcd-bridge-{self._port}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Close the connection ("remove" the card) and wait for the serving thread."""
        self._stopping.set()
        self._close_socket()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _close_socket(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                # shutdown() wakes a recv() blocked in the serving thread; close() alone does not.
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def __enter__(self) -> Self:
        """Start in a background thread."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop on exit."""
        self.stop()


class VpcdReader:
    """The ``vpcd`` backend: a :class:`VirtualCard` reached through pyscard -> pcscd -> vpcd.

    Opening starts a :class:`VpcdBridge` for the card and connects a
    :class:`card_reader.pcsc.PcscReader` to the matching "Virtual PCD" reader, so every
    command crosses the real PC/SC stack.
    """

    def __init__(
        self,
        card: VirtualCard | str | Path,
        *,
        port: int = VPCD_PORT,
        host: str = "127.0.0.1",
        reader: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        """Insert ``card`` into the vpcd slot on ``port`` and connect through PC/SC."""
        from card_reader import pcsc

        self._pcsc = pcsc
        self._card = card if isinstance(card, VirtualCard) else VirtualCard.load(card)
        self._reader_name = reader or vpcd_reader_name(port)
        names = pcsc.list_readers()
        if self._reader_name not in names:
            raise NoReaderError(
                f"no PC/SC reader {self._reader_name!r} (readers: {', '.join(names) or 'none'}); "
                "start pcscd with the vpcd config (.ci/pcscd.sh)"
            )
        busy = [s for s in pcsc.reader_status() if s.name == self._reader_name and s.card_present]
        if busy:
            # A second vpcd client would connect but never get traffic: we would talk to the
            # other card. Refuse instead.
            raise TransportError(
                f"{self._reader_name!r} already holds a card (another bridge on port {port}?)"
            )
        self._bridge = VpcdBridge(self._card, host=host, port=port)
        self._bridge.start()
        try:
            self._reader = pcsc.PcscReader(self._reader_name, timeout=timeout)
        except BaseException:
            self._bridge.stop()
            raise

    @property
    def name(self) -> str:
        """The PC/SC reader name."""
        return self._reader.name

    @property
    def card(self) -> VirtualCard:
        """The card being served."""
        return self._bridge.card

    def atr(self) -> bytes:
        """The card's ATR as pcscd reports it."""
        return self._reader.atr()

    def transmit_raw(self, apdu: bytes) -> bytes:
        """Send raw APDU bytes through PC/SC."""
        return self._reader.transmit_raw(apdu)

    def transmit(self, command: CommandAPDU) -> ResponseAPDU:
        """Send a command through PC/SC (``61 xx`` / ``6C xx`` handled)."""
        return self._reader.transmit(command)

    def reset(self) -> None:
        """Warm reset through PC/SC."""
        self._reader.reset()

    def close(self, removal_timeout: float = 2.0) -> None:
        """Disconnect, remove the card, and wait until pcscd has seen the removal.

        Waiting keeps the slot honest for the next user: otherwise a bridge started right
        after this one could find the reader still showing the old card.
        """
        try:
            self._reader.close()
        finally:
            self._bridge.stop()
            self._pcsc.wait_for_removal(self._reader_name, removal_timeout)

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
