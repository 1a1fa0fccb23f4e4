"""Benchmark: token issuance and a protected read, beside a trivial endpoint, same run.

Starts gunicorn (the committed config) on PostgreSQL, registers a partner client, and drives
three endpoints with wrk over loopback:
  trivial    GET  /healthz                       (the app's floor)
  token      POST /oauth/token                   (client_credentials, client_secret_basic)
  protected  GET  /api/v1/me                      (a verified JWT: signature, claims, deny list,
                                                  client status; the analogue of Authlib's
                                                  example /api/me, which reads token and user)
Reports requests/s, latency and the ratio to the trivial endpoint (the figure that counts:
machines vary). Targets (issue #3): both ratios >= 0.5.

  .venv/bin/python bench/auth.py [--seconds 10] [--connections 16] [--workers 4]
Needs wrk (apt-get install wrk) and PostgreSQL (BENCH_DATABASE_URL, default local).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def reset_database(url: str) -> None:
    """Create the bench database if needed and empty it."""
    target = sa.make_url(url)
    admin = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{target.database}"')
    admin.dispose()


def wrk(url: str, seconds: int, connections: int, script: str | None = None) -> dict[str, float]:
    """Run wrk; return requests/s and latency percentiles in ms."""
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if script:
        cmd[1:1] = ["-s", script]
    return wrk_report(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


def wrk_report(out: str) -> dict[str, float]:
    """requests/s, latency percentiles (ms), requests and non-2xx answers from wrk's output."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        if not m:
            return float("nan")
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    requests_ = re.search(r"(\d+) requests in", out)
    return {
        "rps": rps,
        "p50_ms": pct("50"),
        "p99_ms": pct("99"),
        "requests": float(requests_.group(1)) if requests_ else 0.0,
        "errors": float(non2xx.group(1)) if non2xx else 0.0,
    }


def main() -> int:
    """Run the benchmark and print a table (and JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("bench: wrk not found; install it: apt-get install -y wrk", file=sys.stderr)
        return 2
    db_url = os.environ.get(
        "BENCH_DATABASE_URL",
        "postgresql+psycopg://postgres:postgres@127.0.0.1:5432/citizen_card_bench",
    )
    reset_database(db_url)
    tmp = Path(tempfile.mkdtemp(prefix="cc-bench-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        PORT=str(port),
        WEB_CONCURRENCY=str(args.workers),
        FLASK_APP="citizen_card",
        CITIZEN_CARD_INSTANCE_PATH=str(tmp),
        CITIZEN_CARD_SQLALCHEMY_DATABASE_URI=db_url,
        CITIZEN_CARD_OAUTH2_ISSUER=base,
        CITIZEN_CARD_LOG_LEVEL="WARNING",
    )
    flask = [PY, "-m", "flask"]
    print("bench: migrating and registering a client", file=sys.stderr)
    subprocess.run(
        [*flask, "db", "upgrade", "heads"], env=env, cwd=ROOT, check=True, capture_output=True
    )
    created = json.loads(
        subprocess.run(
            [
                *flask,
                "clients",
                "create",
                "--name",
                "bench",
                "--kind",
                "partner",
                "--scopes",
                "admin:clients",
                "--json",
            ],
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    basic = base64.b64encode(f"{created['client_id']}:{created['client_secret']}".encode()).decode()
    server = subprocess.Popen(
        [
            PY,
            "-m",
            "gunicorn",
            "-c",
            "gunicorn.conf.py",
            "wsgi:app",
            "--access-logfile",
            "/dev/null",
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(300):
            try:
                if requests.get(base + "/readyz", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        token = requests.post(
            base + "/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {basic}"},
            timeout=5,
        ).json()
        token_lua = tmp / "token.lua"
        token_lua.write_text(
            'wrk.method = "POST"\n'
            'wrk.body = "grant_type=client_credentials"\n'
            'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n'
            f'wrk.headers["Authorization"] = "Basic {basic}"\n'
        )
        read_lua = tmp / "read.lua"
        read_lua.write_text(f'wrk.headers["Authorization"] = "Bearer {token["access_token"]}"\n')
        results = {}
        for name, url, script in (
            ("trivial", base + "/healthz", None),
            ("token", base + "/oauth/token", str(token_lua)),
            ("protected", base + "/api/v1/me", str(read_lua)),
        ):
            wrk(url, 2, args.connections, script)  # warm up every worker
            print(
                f"bench: {name} for {args.seconds}s at {args.connections} connections",
                file=sys.stderr,
            )
            results[name] = wrk(url, args.seconds, args.connections, script)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    trivial = results["trivial"]["rps"]
    print(f"{'endpoint':10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>6} {'errors':>6}")
    for name, r in results.items():
        print(
            f"{name:10} {r['rps']:9.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} "
            f"{r['rps'] / trivial:6.2f} {int(r['errors']):6d}"
        )
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
