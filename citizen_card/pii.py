"""Personal-data protection: AES-256-GCM field encryption, a keyed blind index, masking.

Ciphertexts are stored as ``v1.<key id>.<base64url(nonce || ciphertext || tag)>`` so every
value names the key that sealed it and keys can be rotated (``flask keys rotate``). The column
name is bound in as associated data, so a ciphertext moved to another column fails to decrypt.
Exact-match lookups go through an HMAC-SHA256 blind index kept in its own column.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import current_app
from sqlalchemy import String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from citizen_card.config import ConfigError

_VERSION = "v1"
_NONCE_BYTES = 12


class PiiError(RuntimeError):
    """Base class of the personal-data protection errors."""


class DecryptionError(PiiError):
    """A ciphertext is tampered with, truncated, or sealed by a key we do not hold."""


class KeyringError(PiiError, ConfigError):
    """The keyring file is missing, unreadable or malformed."""


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class KeyringData:
    """The keys at one moment: every data key by id, the active one, the blind-index key."""

    active: str
    keys: dict[str, bytes]
    blind_index_key: bytes


def new_key_id() -> str:
    """A sortable, unique key id such as ``k20261124t224211-3f9a``."""
    return time.strftime("k%Y%m%dt%H%M%S", time.gmtime()) + "-" + secrets.token_hex(2)


class Keyring:
    """Keys loaded from a JSON file; reloaded when the file changes (after a rotation)."""

    _RECHECK_SECONDS = 1.0

    def __init__(self, path: str | os.PathLike[str], *, create: bool) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._mtime = 0.0
        self._checked = 0.0
        if not self.path.exists():
            if not create:
                raise KeyringError(f"PII keyring {self.path} does not exist")
            self._write(
                KeyringData(
                    active=(kid := new_key_id()),
                    keys={kid: AESGCM.generate_key(bit_length=256)},
                    blind_index_key=secrets.token_bytes(32),
                )
            )
        self._data = self._read()

    # -- file ------------------------------------------------------------------------------
    def _read(self) -> KeyringData:
        try:
            stat = self.path.stat()
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            data = KeyringData(
                active=raw["active"],
                keys={kid: _b64d(k) for kid, k in raw["keys"].items()},
                blind_index_key=_b64d(raw["blind_index_key"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KeyringError(f"PII keyring {self.path} is unreadable: {exc}") from exc
        if data.active not in data.keys or any(len(k) != 32 for k in data.keys.values()):
            raise KeyringError(f"PII keyring {self.path}: active key missing or not 256-bit")
        self._mtime = stat.st_mtime
        return data

    def _write(self, data: KeyringData) -> None:
        payload = {
            "active": data.active,
            "keys": {kid: _b64e(k) for kid, k in data.keys.items()},
            "blind_index_key": _b64e(data.blind_index_key),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def _current(self, force: bool = False) -> KeyringData:
        now = time.monotonic()
        if force or now - self._checked > self._RECHECK_SECONDS:
            with self._lock:
                self._checked = now
                try:
                    changed = self.path.stat().st_mtime != self._mtime
                except OSError:
                    changed = False
                if changed or force:
                    self._data = self._read()
        return self._data

    # -- keys ------------------------------------------------------------------------------
    @property
    def active_key_id(self) -> str:
        """The id of the key new ciphertexts are sealed with."""
        return self._current().active

    def add_key(self) -> str:
        """Generate a new data key, make it active, keep the old ones for decryption."""
        with self._lock:
            data = self._read()
            kid = new_key_id()
            while kid in data.keys:
                kid = new_key_id()
            keys = dict(data.keys)
            keys[kid] = AESGCM.generate_key(bit_length=256)
            self._write(KeyringData(kid, keys, data.blind_index_key))
            self._data = self._read()
            self._checked = time.monotonic()
            return kid

    # -- encryption ------------------------------------------------------------------------
    def encrypt(self, plaintext: str, context: str) -> str:
        """Seal plaintext with the active key; context (the column) is bound as AAD."""
        data = self._current()
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(data.keys[data.active]).encrypt(
            nonce, plaintext.encode("utf-8"), context.encode("utf-8")
        )
        return f"{_VERSION}.{data.active}.{_b64e(nonce + sealed)}"

    def decrypt(self, token: str, context: str) -> str:
        """Open a ciphertext; raise DecryptionError if it was altered or the key is unknown."""
        try:
            version, kid, body = token.split(".", 2)
            raw = _b64d(body)
        except ValueError as exc:
            raise DecryptionError("ciphertext is malformed") from exc
        if version != _VERSION or len(raw) < _NONCE_BYTES + 16:
            raise DecryptionError("ciphertext is malformed")
        data = self._current()
        if kid not in data.keys:
            data = self._current(force=True)  # another process may have rotated
            if kid not in data.keys:
                raise DecryptionError(f"unknown key id {kid!r}")
        try:
            plain = AESGCM(data.keys[kid]).decrypt(
                raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context.encode("utf-8")
            )
        except InvalidTag as exc:
            raise DecryptionError("ciphertext failed authentication (tampered?)") from exc
        return plain.decode("utf-8")

    @staticmethod
    def key_id_of(token: str) -> str:
        """The key id a ciphertext names, without decrypting it."""
        return token.split(".", 2)[1]

    def blind_index(self, value: str, context: str) -> str:
        """Keyed HMAC-SHA256 of a normalised value, for exact-match lookup."""
        data = self._current()
        message = context.encode("utf-8") + b"\x00" + normalize(value).encode("utf-8")
        return hmac.new(data.blind_index_key, message, hashlib.sha256).hexdigest()


def normalize(value: str) -> str:
    """Canonical form for blind indexing: trimmed, no inner spaces, upper-case (ID 'x')."""
    return "".join(value.split()).upper()


def keyring() -> Keyring:
    """The current app's keyring."""
    ring: Keyring = current_app.extensions["pii_keyring"]
    return ring


class Encrypted(TypeDecorator[str]):
    """A string column stored AES-256-GCM encrypted; ``context`` names the column for AAD."""

    impl = String
    cache_ok = True

    def __init__(self, context: str, length: int = 512) -> None:
        super().__init__(length)
        self.context = context

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        """Encrypt on the way in."""
        if value is None:
            return None
        return keyring().encrypt(value, self.context)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        """Decrypt on the way out."""
        if value is None:
            return None
        return keyring().decrypt(value, self.context)

    def __repr__(self) -> str:
        return f"Encrypted({self.context!r})"


def blind_index(value: str, context: str) -> str:
    """Blind index of value under the current app's keyring."""
    return keyring().blind_index(value, context)


# -- masking -------------------------------------------------------------------------------
def mask(value: str | None, keep_start: int, keep_end: int, char: str = "*") -> str | None:
    """Keep the first and last characters, star the middle; short values are fully starred."""
    if value is None:
        return None
    if len(value) <= keep_start + keep_end:
        return char * len(value)
    middle = len(value) - keep_start - keep_end
    return value[:keep_start] + char * middle + (value[-keep_end:] if keep_end else "")


def mask_national_id(value: str | None) -> str | None:
    """``110105199001011234`` → ``110105********1234`` (region code and last four)."""
    return mask(value, 6, 4)


def mask_phone(value: str | None) -> str | None:
    """``13812345678`` → ``138****5678``."""
    return mask(value, 3, 4)


def mask_name(value: str | None) -> str | None:
    """``张三丰`` → ``张**``: the family name only."""
    return mask(value, 1, 0)


def init_app(app: Any) -> None:
    """Load (in development: create) the keyring named by PII_KEYRING_FILE."""
    create = app.config.get("ENV") != "production"
    app.extensions["pii_keyring"] = Keyring(app.config["PII_KEYRING_FILE"], create=create)
