"""Fixtures for the card tests: one card harness, run in process and through PC/SC.

``harness`` is parametrized: ``virtual`` talks to the card in process; ``pcsc`` goes
pyscard -> pcscd -> vpcd -> VpcdBridge -> VirtualCard. Both send the same raw bytes to the
same :meth:`VirtualCard.execute`. The PC/SC run skips with a visible reason when pcscd (with
the vpcd reader config of ``.ci/pcscd.sh``) is not reachable, and fails instead when
``REQUIRE_PCSC=1`` (CI).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc.jwk import ECKey

from card_reader.issuer import Issuer
from card_reader.issuer import personalize
from card_reader.virtual import VirtualCard
from tests.card_reader.fake_backend import Backend
from tests.card_reader.fake_backend import Handler
from tests.card_reader.helpers import CARD_NUMBER
from tests.card_reader.helpers import CITIZEN_REF
from tests.card_reader.helpers import HOLDER
from tests.card_reader.helpers import PIN
from tests.card_reader.helpers import PUK
from tests.card_reader.helpers import VALID_FROM
from tests.card_reader.helpers import VALID_UNTIL
from tests.card_reader.helpers import CardHarness
from tests.card_reader.helpers import Issued
from tests.card_reader.helpers import PcscStack
from tests.card_reader.helpers import free_vpcd_slots


@pytest.fixture(scope="session")
def pcsc_stack() -> Iterator[PcscStack]:
    """Insert a placeholder card into the first free vpcd slot and connect through PC/SC."""
    from card_reader import pcsc
    from card_reader.vpcd import VpcdBridge

    name, port = free_vpcd_slots()[0]
    bridge = VpcdBridge(VirtualCard(), port=port)
    bridge.start()
    try:
        reader = pcsc.PcscReader(name, timeout=5)
    except BaseException:
        bridge.stop()
        raise
    try:
        yield PcscStack(bridge, reader, name, port)
    finally:
        reader.close()
        bridge.stop()
        pcsc.wait_for_removal(name, 2)


@pytest.fixture(params=["virtual", pytest.param("pcsc", marks=pytest.mark.pcsc)])
def harness(request: pytest.FixtureRequest) -> Iterator[CardHarness]:
    """An empty harness for each backend."""
    stack = request.getfixturevalue("pcsc_stack") if request.param == "pcsc" else None
    h = CardHarness(request.param, stack)
    try:
        yield h
    finally:
        h.close()


@pytest.fixture
def card_file(tmp_path: Path) -> Path:
    """Where this test's card keeps its state."""
    return tmp_path / "card.json"


@pytest.fixture
def blank(harness: CardHarness, card_file: Path) -> CardHarness:
    """A blank, file-backed card in the reader."""
    harness.insert(VirtualCard.create(card_file))
    return harness


@pytest.fixture(scope="session")
def issuer() -> Issuer:
    """A test issuer CA for the whole session."""
    return Issuer.generate_test_issuer()


@pytest.fixture
def issued(blank: CardHarness, issuer: Issuer) -> Issued:
    """A personalized, locked card (personalized through the backend under test)."""
    public_key = personalize(
        blank.client,
        issuer=issuer,
        card_number=CARD_NUMBER,
        holder_name=HOLDER,
        citizen_ref=CITIZEN_REF,
        valid_from=VALID_FROM,
        valid_until=VALID_UNTIL,
        pin=PIN,
        puk=PUK,
    )
    blank.reader.reset()
    return Issued(blank, public_key, issuer)


@pytest.fixture
def terminal_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def backend(terminal_key: ec.EllipticCurvePrivateKey) -> Iterator[Backend]:
    server = Backend(("127.0.0.1", 0), Handler)
    server.terminal_key = ECKey.import_key(terminal_key.public_key())
    server.token_requests = []
    server.assertion_ids = set()
    server.tokens = set()
    server.taps = []
    # A short poll interval keeps shutdown() (which waits for the loop) fast.
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
