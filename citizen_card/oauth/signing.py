"""The token signing keys: ES256 (P-256) key pairs with ids, rotated without breaking tokens.

Kept in a JSON file beside the other instance secrets (``OAUTH2_SIGNING_KEYS_FILE``), never in
the repository or the database. ``flask keys rotate-signing`` adds a key and makes it current;
a retired key stays published at ``/oauth/jwks`` until every token it signed has expired.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from citizen_card.config import ConfigError
from citizen_card.oauth.jose import public_jwk


class SigningKeyError(ConfigError):
    """The signing key file is missing or unreadable."""


@dataclass(frozen=True)
class SigningKey:
    """One key pair; ``retired_at`` is set when a newer key took over."""

    kid: str
    private: ec.EllipticCurvePrivateKey
    created_at: int
    retired_at: int | None

    @property
    def public(self) -> ec.EllipticCurvePublicKey:
        """The public half."""
        return self.private.public_key()


def _new_kid() -> str:
    return time.strftime("es256-%Y%m%d", time.gmtime()) + "-" + secrets.token_hex(4)


class SigningKeyring:
    """Signing keys from a file, re-read when another process rotates them."""

    _RECHECK_SECONDS = 1.0

    def __init__(self, path: str | os.PathLike[str], *, create: bool, token_lifetime: int) -> None:
        self.path = Path(path)
        self.token_lifetime = token_lifetime
        self._lock = threading.Lock()
        self._mtime = 0.0
        self._checked = 0.0
        if not self.path.exists():
            if not create:
                raise SigningKeyError(f"token signing keys {self.path} do not exist")
            key = SigningKey(
                _new_kid(), ec.generate_private_key(ec.SECP256R1()), int(time.time()), None
            )
            self._write([key])
        self._keys = self._read()

    def _read(self) -> list[SigningKey]:
        try:
            stat = self.path.stat()
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            keys = [
                SigningKey(
                    kid=item["kid"],
                    private=serialization.load_pem_private_key(item["pem"].encode(), None),  # type: ignore[arg-type]
                    created_at=int(item["created_at"]),
                    retired_at=item.get("retired_at"),
                )
                for item in raw["keys"]
            ]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SigningKeyError(f"token signing keys {self.path} are unreadable: {exc}") from exc
        if not keys or any(not isinstance(k.private, ec.EllipticCurvePrivateKey) for k in keys):
            raise SigningKeyError(f"token signing keys {self.path}: need at least one P-256 key")
        self._mtime = stat.st_mtime
        return keys

    def _write(self, keys: list[SigningKey]) -> None:
        payload = {
            "keys": [
                {
                    "kid": k.kid,
                    "created_at": k.created_at,
                    "retired_at": k.retired_at,
                    "pem": k.private.private_bytes(
                        serialization.Encoding.PEM,
                        serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption(),
                    ).decode(),
                }
                for k in keys
            ]
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def _current(self) -> list[SigningKey]:
        now = time.monotonic()
        if now - self._checked > self._RECHECK_SECONDS:
            with self._lock:
                self._checked = now
                try:
                    if self.path.stat().st_mtime != self._mtime:
                        self._keys = self._read()
                except OSError:
                    pass
        return self._keys

    @property
    def active(self) -> SigningKey:
        """The key new tokens are signed with (the newest)."""
        return self._current()[-1]

    def published(self) -> list[SigningKey]:
        """Keys whose tokens may still be alive: the active one and recently retired ones."""
        horizon = time.time() - self.token_lifetime - 300  # lifetime plus clock leeway
        return [k for k in self._current() if k.retired_at is None or k.retired_at > horizon]

    def verification_keys(self) -> dict[str, ec.EllipticCurvePublicKey]:
        """kid → public key, for every published key."""
        return {k.kid: k.public for k in self.published()}

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The public JWK set served at /oauth/jwks."""
        return {"keys": [public_jwk(k.public, k.kid) for k in self.published()]}

    def rotate(self) -> SigningKey:
        """Add a new active key, retire the old one, drop keys no token can still need."""
        with self._lock:
            keys = self._read()
            now = int(time.time())
            keys = [
                k if k.retired_at else SigningKey(k.kid, k.private, k.created_at, now) for k in keys
            ]
            horizon = now - self.token_lifetime - 300
            keys = [k for k in keys if k.retired_at is None or k.retired_at > horizon]
            new = SigningKey(_new_kid(), ec.generate_private_key(ec.SECP256R1()), now, None)
            keys.append(new)
            self._write(keys)
            self._keys = self._read()
            self._checked = time.monotonic()
            return new
