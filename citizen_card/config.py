"""Configuration: defaults without secrets, loading from the environment, validation.

Every setting can come from an environment variable prefixed ``CITIZEN_CARD_`` (values are
parsed as JSON where they parse, so ``CITIZEN_CARD_SERVICES='["services.transit"]'`` is a
list). Secrets never live here: in development they are generated on first run into the
instance folder; in production (``CITIZEN_CARD_ENV=production``) they must be given as files.
"""

from __future__ import annotations

import copy
import os
import secrets
from pathlib import Path
from typing import Any

from flask import Flask

ENVIRONMENTS = ("development", "production", "testing")

DEFAULTS: dict[str, Any] = {
    "ENV": "development",
    # Filled in by load_config from the instance folder when not set.
    "SQLALCHEMY_DATABASE_URI": None,
    # No pre-ping: it costs a round trip per request; recycle instead, and a dead
    # connection fails one request rather than taxing all of them.
    "SQLALCHEMY_ENGINE_OPTIONS": {"pool_recycle": 1800},
    "SECRET_KEY": None,
    "SECRET_KEY_FILE": None,
    "PII_KEYRING_FILE": None,
    # OAuth 2 / OpenID Connect (docs/auth.md)
    "OAUTH2_ISSUER": "http://127.0.0.1:8000",
    "OAUTH2_AUDIENCE": None,  # default: <issuer>/api
    "OAUTH2_SIGNING_KEYS_FILE": None,
    "OAUTH2_ACCESS_TOKEN_LIFETIME": 600,
    # How stale a worker's view of revocations and client status may be.
    "OAUTH2_CACHE_SECONDS": 1,
    # Cards (docs/cards.md)
    "CARD_ISSUER_KEY_FILE": None,
    "CARD_ISSUER_CERT_FILE": None,
    "CARD_VALIDITY_YEARS": 5,
    "CARD_NUMBER_PREFIX": "6210",
    "CARD_TX_MAX_SKEW_SECONDS": 300,
    "CARD_CHALLENGE_SECONDS": 60,
    "CARD_LOGIN_TOKEN_LIFETIME": 300,
    # What a terminal may do for a resident after card + PIN (also limited by its own scopes).
    "CARD_LOGIN_SCOPES": [
        "wallet:read",
        "cards:read",
        "cards:suspend",
        "me:consents",
        "transit:read",
    ],
    # Residents' and staff's sign-in (docs/auth.md, "Residents and staff").
    "OAUTH2_AUTHORIZATION_CODE_LIFETIME": 60,
    "OAUTH2_ID_TOKEN_LIFETIME": 600,
    "OAUTH2_REFRESH_TOKEN_LIFETIME": 30 * 24 * 3600,
    # How long a sign-in at /oauth/login is reused for later authorization requests.
    "OAUTH2_LOGIN_SESSION_LIFETIME": 1800,
    # argon2id (RFC 9106's second recommended setting: 64 MiB, 3 passes, 4 lanes).
    "PASSWORD_HASHING": {"time_cost": 3, "memory_cost": 65536, "parallelism": 4},
    # The sign-in session cookie. None: secure exactly when OAUTH2_ISSUER is https.
    "SESSION_COOKIE_NAME": "cc_session",
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_SECURE": None,
    # 2 MiB: a batch of 1,000 gate taps is ~0.5 MiB; anything far larger is a mistake.
    "MAX_CONTENT_LENGTH": 2 * 1024 * 1024,
    # The services this deployment runs (an explicit allow-list; docs/plugins.md).
    "SERVICES": ["services.transit"],
    "AUDIT_SEAL_INTERVAL_SECONDS": 60,
    "LOG_LEVEL": "INFO",
    "DEFAULT_LANGUAGE": "zh-CN",
    # flask-smorest / OpenAPI
    "API_TITLE": "Citizen Card API 市民卡平台接口",
    "API_VERSION": "v1",
    "OPENAPI_VERSION": "3.0.3",
    "OPENAPI_URL_PREFIX": "/api",
    "OPENAPI_JSON_PATH": "openapi.json",
    "OPENAPI_SWAGGER_UI_PATH": "docs",
    "OPENAPI_SWAGGER_UI_URL": "/api/docs/static/",
}


class ConfigError(RuntimeError):
    """Raised when configuration is missing or invalid; the message says what to fix."""


def load_config(app: Flask, test_config: dict[str, Any] | None) -> None:
    """Load DEFAULTS, then the environment (or test_config), then fill and validate."""
    # A deep copy: `__` in environment names writes into nested dicts, which must not be
    # DEFAULTS' own (one app's settings would leak into the next).
    app.config.from_mapping(copy.deepcopy(DEFAULTS))
    if test_config is None:
        app.config.from_prefixed_env("CITIZEN_CARD")
    else:
        app.config.from_mapping(test_config)
    if app.config.get("TESTING"):
        app.config.setdefault("ENV", "testing")
    _fill_secrets(app)
    if app.config.get("SESSION_COOKIE_SECURE") is None:
        app.config["SESSION_COOKIE_SECURE"] = str(app.config.get("OAUTH2_ISSUER")).startswith(
            "https://"
        )
    app.config["SQLALCHEMY_DATABASE_URI"] = normalize_database_url(
        app.config.get("SQLALCHEMY_DATABASE_URI")
    )
    validate_config(app.config)


def normalize_database_url(url: str | None) -> str | None:
    """Point bare postgresql:// URLs at psycopg 3, the driver we ship (not psycopg2)."""
    if url is None:
        return None
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _instance(app: Flask) -> Path:
    path = Path(app.instance_path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _read_secret_file(name: str, path: str) -> str:
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read {path}: {exc.strerror}") from exc
    if not value:
        raise ConfigError(f"{name}: {path} is empty")
    return value


def _fill_secrets(app: Flask) -> None:
    """Resolve secret files; in development generate what is missing into instance/."""
    cfg = app.config
    production = cfg.get("ENV") == "production"
    if not cfg.get("SECRET_KEY") and cfg.get("SECRET_KEY_FILE"):
        cfg["SECRET_KEY"] = _read_secret_file("SECRET_KEY_FILE", cfg["SECRET_KEY_FILE"])
    if production:
        return
    inst = Path(app.instance_path)
    if not cfg.get("SECRET_KEY"):
        key_file = _instance(app) / "secret_key"
        if not key_file.exists():
            _write_private(key_file, secrets.token_urlsafe(48))
        cfg["SECRET_KEY"] = key_file.read_text(encoding="utf-8").strip()
    if not cfg.get("SQLALCHEMY_DATABASE_URI"):
        cfg["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{_instance(app) / 'citizen_card.db'}"
    if not cfg.get("PII_KEYRING_FILE"):
        cfg["PII_KEYRING_FILE"] = str(inst / "pii-keyring.json")
    if not cfg.get("OAUTH2_SIGNING_KEYS_FILE"):
        cfg["OAUTH2_SIGNING_KEYS_FILE"] = str(inst / "signing-keys.json")
    if not cfg.get("CARD_ISSUER_KEY_FILE"):
        cfg["CARD_ISSUER_KEY_FILE"] = str(inst / "issuer-ca-key.pem")
    if not cfg.get("CARD_ISSUER_CERT_FILE"):
        cfg["CARD_ISSUER_CERT_FILE"] = str(inst / "issuer-ca.pem")


def _write_private(path: Path, text: str) -> None:
    """Write a secret readable by the owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def validate_config(cfg: Any) -> None:
    """Check required keys and types; raise ConfigError naming every problem at once."""
    problems: list[str] = []
    if cfg.get("ENV") not in ENVIRONMENTS:
        problems.append(f"ENV must be one of {', '.join(ENVIRONMENTS)}, got {cfg.get('ENV')!r}")
    for key in (
        "SECRET_KEY",
        "SQLALCHEMY_DATABASE_URI",
        "PII_KEYRING_FILE",
        "OAUTH2_SIGNING_KEYS_FILE",
        "CARD_ISSUER_KEY_FILE",
        "CARD_ISSUER_CERT_FILE",
    ):
        if not cfg.get(key):
            hint = f"set CITIZEN_CARD_{key}"
            if key == "SECRET_KEY":
                hint = "set CITIZEN_CARD_SECRET_KEY_FILE to a file holding it"
            problems.append(f"{key} is missing ({hint})")
    if (
        cfg.get("ENV") == "production"
        and str(cfg.get("SECRET_KEY") or "")
        and len(str(cfg["SECRET_KEY"])) < 32
    ):
        problems.append("SECRET_KEY must be at least 32 characters in production")
    uri = cfg.get("SQLALCHEMY_DATABASE_URI")
    if uri and not str(uri).startswith(("sqlite:", "postgresql")):
        problems.append("SQLALCHEMY_DATABASE_URI must be a sqlite:// or postgresql:// URL")
    if not isinstance(cfg.get("SERVICES"), list) or not all(
        isinstance(s, str) for s in cfg.get("SERVICES", [])
    ):
        problems.append('SERVICES must be a JSON list of module paths, e.g. ["services.transit"]')
    issuer = str(cfg.get("OAUTH2_ISSUER") or "")
    if not issuer.startswith(("https://", "http://")) or issuer.endswith("/"):
        problems.append("OAUTH2_ISSUER must be an http(s) URL without a trailing slash")
    if cfg.get("ENV") == "production" and not issuer.startswith("https://"):
        problems.append("OAUTH2_ISSUER must be https in production")
    lifetime = cfg.get("OAUTH2_ACCESS_TOKEN_LIFETIME")
    if not isinstance(lifetime, int) or not 60 <= lifetime <= 3600:
        problems.append("OAUTH2_ACCESS_TOKEN_LIFETIME must be 60 to 3600 seconds")
    for key, low, high in (
        ("OAUTH2_AUTHORIZATION_CODE_LIFETIME", 10, 600),
        ("OAUTH2_ID_TOKEN_LIFETIME", 60, 3600),
        ("OAUTH2_REFRESH_TOKEN_LIFETIME", 3600, 90 * 24 * 3600),
        ("OAUTH2_LOGIN_SESSION_LIFETIME", 60, 24 * 3600),
    ):
        value = cfg.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            problems.append(f"{key} must be {low} to {high} seconds, got {value!r}")
    problems.extend(_password_hashing_problems(cfg))
    if cfg.get("ENV") == "production" and cfg.get("SESSION_COOKIE_SECURE") is not True:
        problems.append("SESSION_COOKIE_SECURE must be true in production (sign-in cookie)")
    for key in (
        "MAX_CONTENT_LENGTH",
        "AUDIT_SEAL_INTERVAL_SECONDS",
        "OAUTH2_CACHE_SECONDS",
        "CARD_TX_MAX_SKEW_SECONDS",
        "CARD_CHALLENGE_SECONDS",
        "CARD_LOGIN_TOKEN_LIFETIME",
    ):
        value = cfg.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            problems.append(f"{key} must be a non-negative integer, got {value!r}")
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))


def _password_hashing_problems(cfg: Any) -> list[str]:
    """Check the argon2id cost; production may not go below OWASP's floor (19 MiB, t=2)."""
    params = cfg.get("PASSWORD_HASHING")
    keys = {"time_cost", "memory_cost", "parallelism"}
    if (
        not isinstance(params, dict)
        or set(params) != keys
        or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in params.values()
        )
    ):
        return ["PASSWORD_HASHING must be {time_cost, memory_cost (KiB), parallelism}, positive"]
    if params["memory_cost"] < 8 * params["parallelism"]:
        return ["PASSWORD_HASHING memory_cost must be at least 8 KiB per lane (parallelism)"]
    if cfg.get("ENV") == "production" and (
        params["memory_cost"] < 19456 or params["time_cost"] < 2
    ):
        return ["PASSWORD_HASHING is too cheap for production (at least 19456 KiB and 2 passes)"]
    return []
