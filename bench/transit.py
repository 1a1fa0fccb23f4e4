"""Benchmark: gate taps under gunicorn on PostgreSQL, beside a trivial endpoint, same run.

  .venv/bin/python bench/transit.py [--cards 2000] [--seconds 3] [--connections 16]
                                    [--workers 4] [--batch 1000] [--uploaders 4] [--rounds 3]

Personalizes N virtual cards (in memory, activated), funds their wallets and pre-signs every
tap, so the load generators measure the server, not the cards. Then, against gunicorn (the
committed config) on PostgreSQL:
  trivial   GET  /healthz                    wrk, C connections (the app's floor, same run)
  batch     POST /api/v1/transit/taps:batch  offline uploads of --batch taps (whole trips:
                                             in, then out, priced and paid; --rounds trips
                                             per card), U uploads at a time
  tap-in    POST /api/v1/transit/taps        wrk, C connections, each body sent once
  tap-out   POST /api/v1/transit/taps        wrk, C connections, each body sent once
Reports requests/s, p50/p99 latency and the ratio to the trivial endpoint (the figure that
counts: machines vary), and batch taps/s. A run where wrk ran out of pre-signed taps, or any
tap was not accepted, is refused (rerun with more --cards). Targets (issue #6): tap-out
>= 0.25x trivial with p99 <= 30 ms at 16 gates; batch >= 3,000 taps/s.
Needs wrk (apt-get install wrk) and PostgreSQL (BENCH_DATABASE_URL).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.auth import reset_database  # noqa: E402
from bench.auth import wrk  # noqa: E402
from bench.auth import wrk_report  # noqa: E402

LUA = ROOT / "bench" / "taps.lua"


def progress(message: str) -> None:
    """Progress on stderr, so stdout stays the report."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


def wrk_taps(url: str, bodies: list[dict], token: str, seconds: int, connections: int, tmp: Path):
    """Drive the tap endpoint with wrk, each pre-signed body at most once."""
    path = tmp / f"bodies-{time.monotonic_ns()}.jsonl"
    path.write_text("".join(json.dumps(b) + "\n" for b in bodies))
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(LUA), url]
    out = subprocess.run(
        [*cmd, "--", str(path), token, "2"], capture_output=True, text=True, check=True
    ).stdout
    result = wrk_report(out)
    found = re.search(r"BENCH bad=(\d+) exhausted=(\d+)", out)
    assert found, out
    result["bad"], result["exhausted"] = int(found.group(1)), int(found.group(2))
    return result


def main() -> int:
    """Set up, run, report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", type=int, default=2000)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--uploaders", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="offline trips per card")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("bench: wrk not found; install it: apt-get install -y wrk", file=sys.stderr)
        return 2
    db_url = os.environ.get(
        "BENCH_DATABASE_URL",
        "postgresql+psycopg://postgres:postgres@127.0.0.1:5432/citizen_card_bench_transit",
    )
    import flask_migrate
    from cryptography.hazmat.primitives.asymmetric import ec

    from card_reader.card import CitizenCardClient
    from card_reader.terminal import TerminalClient
    from card_reader.terminal import public_jwks
    from citizen_card import create_app
    from citizen_card.audit.actions import Actor
    from citizen_card.cards.actions import verify_transaction
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
    cards: list[CitizenCardClient] = []
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
        started = time.monotonic()
        for i in range(args.cards):
            if i % 250 == 0:
                progress(f"personalizing and activating cards {i}/{args.cards}")
            citizen = citizens.create_citizen(
                {
                    "national_id": make_national_id(
                        "110105", date(1950 + i // 6000, 1 + (i // 500) % 12, 1), i % 500, "M"
                    ),
                    "name": "测试",
                    "district": "110105",
                    "residence_type": "registered",
                    "insurance_scheme": "employee",
                    "employment_status": "employed",
                },
                actor=actor,
            )
            card, _number = issue_virtual_card(
                citizen.id, actor=actor, pin="123456", puk="12345678"
            )
            ledger.post(
                "topup",
                [
                    ledger.Leg(clearing, -1_000_000),
                    ledger.Leg(ledger.wallet_of(citizen.id), 1_000_000),
                ],
                actor=actor,
            )
            card.select()
            card.verify_pin("123456")
            # The first PIN-verified transaction activates a card (not what is measured).
            first = card.sign_transaction(gate_site, secrets.token_bytes(8), int(time.time()), 0)
            verify_transaction(first, actor=actor, terminal=gate_site, purpose="bench.activate")
            db.session.commit()
            cards.append(card)
        progress(f"{args.cards} cards in {time.monotonic() - started:.0f} s")
        # Statistics for the freshly loaded tables, as autovacuum would gather them in time:
        # with the empty tables' estimates PostgreSQL plans a walk over every wallet.
        db.session.execute(db.text("ANALYZE"))
        db.session.commit()
        db.session.remove()

    def sign(card: CitizenCardClient, direction: str, stop: str, at: int) -> dict:
        tx = card.sign_transaction(gate_site, secrets.token_bytes(8), at, 0)
        return {**tx.to_json(), "direction": direction, "stop_id": stop}

    results: dict[str, dict[str, float]] = {}
    with gunicorn(app, port, tmp / "gunicorn.log", workers=args.workers) as base:
        token = TerminalClient(
            client_id=gate_id, token_url=f"{base}/oauth/token", api_base=base, private_key=key
        ).access_token()
        taps_url = f"{base}/api/v1/transit/taps"
        wrk(f"{base}/healthz", 2, args.connections)  # warm up every worker
        progress(f"trivial for {args.seconds}s at {args.connections} connections")
        results["trivial"] = wrk(f"{base}/healthz", args.seconds, args.connections)

        # Offline uploads: whole trips hours ago, in then out, every card once per round.
        progress("signing offline uploads")
        uploads: list[list[dict]] = [[]]
        for r in range(args.rounds):
            earlier = int(time.time()) - 3600 * (2 + args.rounds - r)
            for k, card in enumerate(cards):
                if len(uploads[-1]) + 2 > args.batch:
                    uploads.append([])
                at = earlier + k % 600
                uploads[-1].append(sign(card, "in", "L1-TIANANMENXI", at))
                uploads[-1].append(sign(card, "out", "L2-QIANMEN", at + 900))
        auth = {"Authorization": f"Bearer {token}"}

        def upload(items: list[dict]) -> tuple[float, int]:
            t0 = time.perf_counter()
            r = requests.post(f"{taps_url}:batch", json={"taps": items}, headers=auth, timeout=120)
            r.raise_for_status()
            return time.perf_counter() - t0, int(r.json()["accepted"])

        total = sum(len(u) for u in uploads)
        progress(f"batch: {len(uploads)} uploads, {total} taps, {args.uploaders} at a time")
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.uploaders) as pool:
            outcomes = list(pool.map(upload, uploads))
        wall = time.perf_counter() - t0
        lat = sorted(s for s, _ in outcomes)
        results["batch"] = {
            "rps": len(uploads) / wall,
            "taps_per_s": total / wall,
            "p50_ms": lat[len(lat) // 2] * 1000,
            "p99_ms": lat[-1] * 1000,
            "requests": float(len(uploads)),
            "bad": float(total - sum(a for _, a in outcomes)),
            "exhausted": 0.0,
        }

        progress("signing online taps")
        now = int(time.time())
        ins = [sign(c, "in", "L1-TIANANMENXI", now) for c in cards]
        outs = [sign(c, "out", "L1-GUOMAO", now + 1) for c in cards]
        progress(f"tap-in for {args.seconds}s at {args.connections} connections")
        results["tap-in"] = wrk_taps(taps_url, ins, token, args.seconds, args.connections, tmp)
        # Cards wrk did not reach enter too (offline), so every exit has its entry.
        with app.app_context():
            entered = {
                n
                for (n,) in db.session.execute(
                    db.text("SELECT card_number FROM transit_trip WHERE status = 'open'")
                )
            }
            db.session.remove()
        rest = [sign(c, "in", "L1-TIANANMENXI", now) for c in cards if c.card_number not in entered]
        for start in range(0, len(rest), args.batch):
            upload(rest[start : start + args.batch])
        progress(f"tap-out for {args.seconds}s at {args.connections} connections")
        results["tap-out"] = wrk_taps(taps_url, outs, token, args.seconds, args.connections, tmp)
    floor = results["trivial"]["rps"]
    print(f"{'endpoint':9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>6} {'not ok':>7}")
    for name, r in results.items():
        print(
            f"{name:9} {r['rps']:8.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} "
            f"{r['rps'] / floor:6.2f} {int(r.get('bad', 0)):7d}"
        )
    print(f"batch ingestion: {results['batch']['taps_per_s']:.0f} taps/s")
    if args.json:
        print(json.dumps(results))
    spoiled = [n for n, r in results.items() if r.get("bad") or r.get("exhausted")]
    if spoiled:
        print(
            f"bench: not a valid run: {', '.join(spoiled)} had taps not accepted or ran out of "
            "pre-signed taps (rerun with more --cards)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
