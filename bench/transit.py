"""Benchmark: gate taps under gunicorn on PostgreSQL, beside a trivial endpoint, same run.

  .venv/bin/python bench/transit.py [--cards 200] [--gates 16] [--workers 4] [--batch 1000]

Personalizes N virtual cards (in memory), funds their wallets, and pre-signs every tap so the
load generator measures the server, not the cards. Then, with G concurrent simulated gates:
  trivial   GET  /healthz                        (the app's floor, same client, same run)
  tap-in    POST /api/v1/transit/taps            (online: verify, balance check, trip)
  tap-out   POST /api/v1/transit/taps            (online: verify, price, debit, trip)
  batch     POST /api/v1/transit/taps:batch      (offline upload, --batch taps per request)
Reports requests/s and p50/p99 latency, and the ratio to the trivial endpoint (the figure that
counts: machines vary). Targets (issue #6): tap-out >= 0.25x trivial with p99 <= 30 ms at 16
gates; batch >= 3,000 taps/s. Needs PostgreSQL (BENCH_DATABASE_URL).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def progress(message: str) -> None:
    """Progress on stderr, so stdout stays the report."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


def drive(
    name: str, requests_: list[tuple[str, str, dict | None]], gates: int, headers: dict[str, str]
) -> dict[str, float]:
    """Send every request with ``gates`` concurrent clients; return rate and latency."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    cursor = iter(requests_)

    def worker() -> None:
        nonlocal errors
        session = requests.Session()
        while True:
            with lock:
                item = next(cursor, None)
            if item is None:
                return
            method, url, body = item
            started = time.perf_counter()
            r = session.request(method, url, json=body, headers=headers, timeout=60)
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                if r.status_code >= 400 or (body and r.json().get("result") == "refused"):
                    errors += 1

    started = time.perf_counter()
    with ThreadPoolExecutor(gates) as pool:
        for _ in range(gates):
            pool.submit(worker)
    wall = time.perf_counter() - started
    latencies.sort()
    return {
        "name": name,
        "requests": len(latencies),
        "rps": len(latencies) / wall,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "errors": errors,
    }


def main() -> int:
    """Set up, run, report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", type=int, default=200)
    parser.add_argument("--gates", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    db_url = os.environ.get(
        "BENCH_DATABASE_URL",
        "postgresql+psycopg://postgres:postgres@127.0.0.1:5432/citizen_card_bench_transit",
    )
    import flask_migrate
    from cryptography.hazmat.primitives.asymmetric import ec

    from bench.auth import reset_database
    from card_reader.card import CitizenCardClient
    from card_reader.terminal import TerminalClient
    from card_reader.terminal import public_jwks
    from citizen_card import create_app
    from citizen_card.audit.actions import Actor
    from citizen_card.cards.inprocess import issue_virtual_card
    from citizen_card.citizens import actions as citizens
    from citizen_card.citizens.national_id import make_national_id
    from citizen_card.extensions import db
    from citizen_card.ledger import actions as ledger
    from citizen_card.oauth.clients import create_client
    from services.transit.fares import active_rules
    from services.transit.gtfs import SAMPLE_FEED
    from services.transit.gtfs import import_feed
    from tests.gunicorn_server import free_port
    from tests.gunicorn_server import gunicorn

    reset_database(db_url)
    tmp = Path(tempfile.mkdtemp(prefix="cc-bench-transit-"))
    port = free_port()
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": db_url,
            "INSTANCE_PATH": str(tmp),
            "SECRET_KEY": "b" * 40,
            "PII_KEYRING_FILE": str(tmp / "pii.json"),
            "OAUTH2_SIGNING_KEYS_FILE": str(tmp / "signing.json"),
            "CARD_ISSUER_KEY_FILE": str(tmp / "ca-key.pem"),
            "CARD_ISSUER_CERT_FILE": str(tmp / "ca.pem"),
            "OAUTH2_ISSUER": f"http://127.0.0.1:{port}",
            "SERVICES": ["services.transit"],
            "LOG_LEVEL": "WARNING",
        }
    )
    actor = Actor.system("bench")
    gate_site = "gate-bench"
    key = ec.generate_private_key(ec.SECP256R1())
    cards_: list[tuple[CitizenCardClient, str]] = []
    with app.app_context():
        flask_migrate.upgrade(revision="heads")
        import_feed(SAMPLE_FEED, rules=active_rules())
        gate, _ = create_client(
            name="bench gate",
            kind="terminal",
            organisation="Subway",
            site=gate_site,
            scopes=["transit:tap"],
            jwks=public_jwks(key),
            actor=actor,
        )
        gate_id = gate.client_id
        clearing = ledger.get_account("topup_clearing", "bench", allow_negative=True)
        for i in range(args.cards):
            if i % 50 == 0:
                progress(f"personalizing cards {i}/{args.cards}")
            citizen = citizens.create_citizen(
                {
                    "national_id": make_national_id(
                        "110105", date(1970 + i // 500, 1, 1), i % 500, "M"
                    ),
                    "name": "测试",
                    "district": "110105",
                    "residence_type": "registered",
                    "insurance_scheme": "employee",
                    "employment_status": "employed",
                },
                actor=actor,
            )
            card, number = issue_virtual_card(citizen.id, actor=actor, pin="123456", puk="12345678")
            ledger.post(
                "topup",
                [
                    ledger.Leg(clearing, -1_000_000),
                    ledger.Leg(ledger.wallet_of(citizen.id), 1_000_000),
                ],
                actor=actor,
            )
            db.session.commit()
            card.select()
            card.verify_pin("123456")  # stays verified for this session: activation on tap-in
            cards_.append((card, number))
        db.session.remove()

    def sign(card: CitizenCardClient, direction: str, stop: str, at: int) -> dict:
        tx = card.sign_transaction(gate_site, secrets.token_bytes(8), at, 0)
        return {**tx.to_json(), "direction": direction, "stop_id": stop}

    with gunicorn(app, port, tmp / "gunicorn.log", workers=args.workers) as base:
        token = TerminalClient(
            client_id=gate_id, token_url=f"{base}/oauth/token", api_base=base, private_key=key
        ).access_token()
        auth = {"Authorization": f"Bearer {token}"}
        taps_url = f"{base}/api/v1/transit/taps"
        progress("signing online taps")
        now = int(time.time())
        ins = [("POST", taps_url, sign(c, "in", "L1-TIANANMENXI", now)) for c, _ in cards_]
        outs = [("POST", taps_url, sign(c, "out", "L1-GUOMAO", now + 1)) for c, _ in cards_]
        trivial = [("GET", f"{base}/healthz", None)] * (len(cards_) * 2)
        drive("warm-up", trivial[:200], args.gates, {})
        results = [drive("trivial", trivial, args.gates, {})]
        progress("online taps in, then out")
        results.append(drive("tap-in", ins, args.gates, auth))
        results.append(drive("tap-out", outs, args.gates, auth))
        progress("signing offline batches")
        batch_bodies = []
        pairs = max(1, args.batch // 2)
        for start in range(0, 4 * pairs, pairs):
            items = []
            for k in range(pairs):
                card, _ = cards_[(start + k) % len(cards_)]
                at = now - 86400 + 600 * (start // pairs) + k % 300
                items.append(sign(card, "in", "L1-TIANANMENXI", at))
                items.append(sign(card, "out", "L2-QIANMEN", at + 60))
            batch_bodies.append(("POST", f"{taps_url}:batch", {"taps": items}))
        progress(f"{len(batch_bodies)} batches of {2 * pairs} taps")
        batch = drive("batch", batch_bodies, min(args.gates, len(batch_bodies)), auth)
        batch["taps_per_s"] = batch["rps"] * 2 * pairs
        results.append(batch)
    floor = results[0]["rps"]
    head = ("endpoint", "requests", "req/s", "p50 ms", "p99 ms", "ratio", "errors")
    print(f"{head[0]:9} " + " ".join(f"{h:>8}" for h in head[1:]))
    for r in results:
        cells = (
            r["requests"],
            round(r["rps"]),
            f"{r['p50_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            f"{r['rps'] / floor:.2f}",
            r["errors"],
        )
        print(f"{r['name']:9} " + " ".join(f"{c!s:>8}" for c in cells))
    print(f"batch ingestion: {batch['taps_per_s']:.0f} taps/s")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
