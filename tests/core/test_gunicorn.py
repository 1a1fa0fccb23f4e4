"""The committed gunicorn config serves the app: real processes, real sockets."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.no_isolation
def test_gunicorn_serves_with_json_access_log(committed_app, tmp_path):
    port = _free_port()
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(ROOT),
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "CITIZEN_CARD_INSTANCE_PATH": str(tmp_path),
        "CITIZEN_CARD_SQLALCHEMY_DATABASE_URI": committed_app.config["SQLALCHEMY_DATABASE_URI"],
        "CITIZEN_CARD_PII_KEYRING_FILE": committed_app.config["PII_KEYRING_FILE"],
        "CITIZEN_CARD_SERVICES": json.dumps(committed_app.config["SERVICES"]),
    }
    log = (tmp_path / "gunicorn.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                r = requests.get(f"{base}/readyz", timeout=2)
                break
            except (requests.ConnectionError, requests.Timeout):
                # Workers still booting (beside the services' companions).
                assert proc.poll() is None, (tmp_path / "gunicorn.log").read_text()
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.1)
        assert r.status_code == 200, r.text
        r = requests.post(
            f"{base}/api/v1/hello-service/greetings",
            data="{bad",
            headers={"Content-Type": "application/json", "X-Request-ID": "req-gunicorn-1"},
            timeout=5,
        )
        assert r.status_code == 400
        assert r.headers["Content-Type"] == "application/problem+json"
        assert r.json()["request_id"] == "req-gunicorn-1"
        assert requests.get(f"{base}/api/openapi.json", timeout=5).json()["openapi"]
        docs = requests.get(f"{base}/api/docs", timeout=5)
        assert docs.status_code == 200 and "/api/docs/static/swagger-ui-bundle.js" in docs.text
        asset = requests.get(f"{base}/api/docs/static/swagger-ui-bundle.js", timeout=5)
        assert asset.status_code == 200 and len(asset.content) > 100_000
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=40) == 0
        log.close()
    lines = [json.loads(x) for x in (tmp_path / "gunicorn.log").read_text().splitlines() if x]
    assert any(x["msg"].startswith("Listening at: http://127.0.0.1:") for x in lines)
    access = [x for x in lines if x.get("logger") == "gunicorn.access"]
    bad = [x for x in access if x["request_id"] == "req-gunicorn-1"]
    assert bad and bad[0]["status"] == 400 and bad[0]["method"] == "POST"
    assert bad[0]["path"] == "/api/v1/hello-service/greetings"
