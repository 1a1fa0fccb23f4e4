"""Latency measurements for ``docs/card-protocol.md`` (``python -m card_reader bench``).

Measures, through a chosen backend, the round trip of one small APDU and the time a gate
needs for a complete signed transaction (SELECT, whose answer carries the card number, then
SIGN TRANSACTION with the ATC written to disk before the card answers).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from card_reader import open_reader
from card_reader.apdu import CommandAPDU
from card_reader.card import CitizenCardClient
from card_reader.errors import CardResponseError
from card_reader.issuer import Issuer
from card_reader.issuer import personalize
from card_reader.issuer import random_card_number
from card_reader.protocol import AID
from card_reader.protocol import CLA_ISO
from card_reader.protocol import Ins
from card_reader.protocol import Tag
from card_reader.terminal import read_transaction
from card_reader.virtual import VirtualCard


@dataclass(frozen=True)
class Timing:
    """Summary of one measured operation, in microseconds."""

    name: str
    samples: int
    median_us: float
    p99_us: float
    min_us: float
    max_us: float

    def to_json(self) -> dict[str, Any]:
        """JSON-friendly form, rounded to 0.1 µs."""
        return {
            "name": self.name,
            "samples": self.samples,
            "median_us": round(self.median_us, 1),
            "p99_us": round(self.p99_us, 1),
            "min_us": round(self.min_us, 1),
            "max_us": round(self.max_us, 1),
        }


def summarize(name: str, samples_ns: list[int]) -> Timing:
    """Median and 99th percentile (nearest rank) of nanosecond samples."""
    ordered = sorted(samples_ns)
    p99_index = max(0, -(-99 * len(ordered) // 100) - 1)
    return Timing(
        name=name,
        samples=len(ordered),
        median_us=statistics.median(ordered) / 1000,
        p99_us=ordered[p99_index] / 1000,
        min_us=ordered[0] / 1000,
        max_us=ordered[-1] / 1000,
    )


def run(
    backend: str = "vpcd",
    *,
    rounds: int = 2000,
    transactions: int = 300,
    port: int | None = None,
    reader_name: str | None = None,
    workdir: str | Path | None = None,
    in_memory: bool = False,
) -> list[Timing]:
    """Personalize a blank card and time APDUs through ``backend``.

    ``virtual`` and ``vpcd`` use a fresh file-backed card in this process; ``pcsc`` uses the
    blank card in ``reader_name`` (for instance one served by ``python -m card_reader vpcd``
    in another process, so card and terminal do not share an interpreter). ``in_memory``
    drops the state file, to show what the durable ATC write costs.
    """
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        card = None
        if backend != "pcsc":
            card = VirtualCard.create(None if in_memory else Path(tmp) / "bench-card.json")
        with open_reader(backend, card=card, port=port, reader=reader_name) as reader:
            client = CitizenCardClient(reader)
            personalize(
                client,
                issuer=Issuer.generate_test_issuer(),
                card_number=random_card_number(),
                holder_name="Bench Holder",
                citizen_ref="BENCH-1",
                valid_from=date(2025, 1, 1),
                valid_until=date(2035, 1, 1),
                pin="123456",
                puk="12345678",
            )
            client.select()
            # GET DATA ATC with the exact Le: one command, one response, no retries.
            raw = CommandAPDU(CLA_ISO, Ins.GET_DATA, Tag.ATC >> 8, Tag.ATC & 0xFF, ne=4).to_bytes()
            select = CommandAPDU(CLA_ISO, Ins.SELECT, 0x04, 0x0C, AID).to_bytes()
            for _ in range(50):  # warm-up
                reader.transmit_raw(raw)
            apdu_ns = []
            for _ in range(rounds):
                start = time.perf_counter_ns()
                response = reader.transmit_raw(raw)
                apdu_ns.append(time.perf_counter_ns() - start)
                if response[-2:] != b"\x90\x00":
                    raise CardResponseError(f"bench APDU failed: {response.hex()}")
            sign_ns = []
            tx_ns = []
            for i in range(transactions):
                start = time.perf_counter_ns()
                read_transaction(client, terminal_id="bench-gate", amount_fen=200 + i)
                tx_ns.append(time.perf_counter_ns() - start)
                reader.transmit_raw(select)
                un = i.to_bytes(8, "big")
                start = time.perf_counter_ns()
                client.sign_transaction("bench-gate", un, 1_767_225_600, 200)
                sign_ns.append(time.perf_counter_ns() - start)
    return [
        summarize(f"APDU round trip (GET DATA ATC) via {backend}", apdu_ns),
        summarize(f"SIGN TRANSACTION alone via {backend}", sign_ns),
        summarize(f"full transaction (SELECT+SIGN) via {backend}", tx_ns),
    ]
