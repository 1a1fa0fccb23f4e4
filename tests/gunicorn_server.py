"""Run the app under the committed gunicorn config, on a free port, for the duration of a test."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
from flask import Flask

ROOT = Path(__file__).resolve().parents[1]
# The settings a separate process needs to be the same deployment as the test app.
_SHARED = (
    "SQLALCHEMY_DATABASE_URI",
    "PII_KEYRING_FILE",
    "OAUTH2_SIGNING_KEYS_FILE",
    "CARD_ISSUER_KEY_FILE",
    "CARD_ISSUER_CERT_FILE",
    "SECRET_KEY",
)


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def gunicorn(app: Flask, port: int, log: Path, workers: int = 4) -> Iterator[str]:
    """Serve ``app``'s database and keys with real gunicorn workers; yield the base URL."""
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(ROOT),
        "PORT": str(port),
        "WEB_CONCURRENCY": str(workers),
        "CITIZEN_CARD_INSTANCE_PATH": app.instance_path,
        "CITIZEN_CARD_SERVICES": json.dumps(app.config["SERVICES"]),
        "CITIZEN_CARD_OAUTH2_ISSUER": app.config["OAUTH2_ISSUER"],
        "CITIZEN_CARD_LOG_LEVEL": "WARNING",
    }
    for key in _SHARED:
        env[f"CITIZEN_CARD_{key}"] = str(app.config[key])
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if requests.get(f"{base}/readyz", timeout=2).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "gunicorn did not become ready"
                time.sleep(0.1)
            yield base
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=40)
