"""Configuration from the environment, validation, and first-run secrets."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from citizen_card import create_app
from citizen_card.config import ConfigError
from tests.conftest import make_test_config


def _start(tmp_path, **env: str) -> subprocess.CompletedProcess[str]:
    """Start the app as production would: a new process, configured by environment only."""
    base = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": ".",
        "CITIZEN_CARD_INSTANCE_PATH": str(tmp_path),
    }
    code = (
        "from citizen_card import create_app; app = create_app(); "
        "print(app.config['SQLALCHEMY_DATABASE_URI']); print(app.config['SERVICES'])"
    )
    return subprocess.run(
        [sys.executable, "-c", code], env=base | env, capture_output=True, text=True, timeout=60
    )


def test_development_first_run_generates_private_secrets(tmp_path):
    first = _start(tmp_path)
    assert first.returncode == 0, first.stderr
    assert f"sqlite:///{tmp_path}/citizen_card.db" in first.stdout
    secret = (tmp_path / "secret_key").read_text()
    assert len(secret) >= 48
    for name in ("secret_key", "pii-keyring.json", "signing-keys.json", "issuer-ca-key.pem"):
        assert (tmp_path / name).stat().st_mode & 0o077 == 0, name
    # Second run reuses them: sessions and ciphertexts survive restarts.
    assert _start(tmp_path).returncode == 0
    assert (tmp_path / "secret_key").read_text() == secret


def test_environment_values_are_parsed_as_json(tmp_path):
    result = _start(tmp_path, CITIZEN_CARD_SERVICES='["tests.plugins.hello_service"]')
    assert result.returncode == 0, result.stderr
    assert "['tests.plugins.hello_service']" in result.stdout


def test_production_refuses_to_start_without_secrets(tmp_path):
    result = _start(tmp_path, CITIZEN_CARD_ENV="production")
    assert result.returncode == 2
    assert "SECRET_KEY is missing (set CITIZEN_CARD_SECRET_KEY_FILE" in result.stderr
    assert "SQLALCHEMY_DATABASE_URI is missing" in result.stderr
    assert "PII_KEYRING_FILE is missing" in result.stderr
    assert "OAUTH2_SIGNING_KEYS_FILE is missing" in result.stderr
    assert "CARD_ISSUER_KEY_FILE is missing" in result.stderr
    assert "OAUTH2_ISSUER must be https in production" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "secret_key").exists()


def test_production_reads_secrets_from_files(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("k" * 40 + "\n")
    ring_dev = _start(tmp_path / "dev")  # make a keyring the way dev does
    assert ring_dev.returncode == 0
    result = _start(
        tmp_path,
        CITIZEN_CARD_ENV="production",
        CITIZEN_CARD_SECRET_KEY_FILE=str(key_file),
        CITIZEN_CARD_SQLALCHEMY_DATABASE_URI="postgresql://postgres@127.0.0.1/x",
        CITIZEN_CARD_PII_KEYRING_FILE=str(tmp_path / "dev" / "pii-keyring.json"),
        CITIZEN_CARD_OAUTH2_SIGNING_KEYS_FILE=str(tmp_path / "dev" / "signing-keys.json"),
        CITIZEN_CARD_CARD_ISSUER_KEY_FILE=str(tmp_path / "dev" / "issuer-ca-key.pem"),
        CITIZEN_CARD_CARD_ISSUER_CERT_FILE=str(tmp_path / "dev" / "issuer-ca.pem"),
        CITIZEN_CARD_OAUTH2_ISSUER="https://id.city.example",
    )
    assert result.returncode == 0, result.stderr
    assert "postgresql+psycopg://postgres@127.0.0.1/x" in result.stdout


def test_production_with_missing_keyring_file_fails_clearly(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("k" * 40)
    result = _start(
        tmp_path,
        CITIZEN_CARD_ENV="production",
        CITIZEN_CARD_SECRET_KEY_FILE=str(key_file),
        CITIZEN_CARD_SQLALCHEMY_DATABASE_URI="postgresql://postgres@127.0.0.1/x",
        CITIZEN_CARD_PII_KEYRING_FILE=str(tmp_path / "absent.json"),
        CITIZEN_CARD_OAUTH2_SIGNING_KEYS_FILE=str(tmp_path / "absent-keys.json"),
        CITIZEN_CARD_CARD_ISSUER_KEY_FILE=str(tmp_path / "absent-ca-key.pem"),
        CITIZEN_CARD_CARD_ISSUER_CERT_FILE=str(tmp_path / "absent-ca.pem"),
        CITIZEN_CARD_OAUTH2_ISSUER="https://id.city.example",
    )
    assert result.returncode == 2
    assert "absent.json does not exist" in result.stderr


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"ENV": "staging"}, "ENV must be one of"),
        ({"SERVICES": "services.transit"}, "SERVICES must be a JSON list"),
        ({"MAX_CONTENT_LENGTH": -1}, "MAX_CONTENT_LENGTH must be a non-negative integer"),
        ({"SQLALCHEMY_DATABASE_URI": "mysql://x"}, "must be a sqlite:// or postgresql:// URL"),
        (
            {"SECRET_KEY_FILE": "/nonexistent/key", "SECRET_KEY": None},
            "cannot read /nonexistent/key",
        ),
    ],
)
def test_invalid_values_are_named(tmp_path, override, message):
    config = make_test_config(tmp_path, f"sqlite:///{tmp_path / 'x.db'}", **override)
    with pytest.raises(ConfigError, match=message):
        create_app(config)
