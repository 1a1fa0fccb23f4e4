"""The terminal client: reads cards through any backend and talks to the backend API.

A terminal is an OAuth client authenticating with ``private_key_jwt`` (RFC 7523 section 2.2):
it signs a short-lived client assertion with its own EC P-256 key and exchanges it for an
access token with the ``client_credentials`` grant. The token is cached until shortly before
it expires. API errors in ``application/problem+json`` (RFC 9457) become :class:`ApiProblem`.

Only the standard library does HTTP here (``urllib.request``), so a terminal needs nothing
beyond the runtime requirements.
"""

from __future__ import annotations

import json
import os
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt
from joserfc.jwk import ECKey

from card_reader.card import CitizenCardClient
from card_reader.errors import CardReaderError
from card_reader.protocol import UN_LENGTH
from card_reader.protocol import SignedTransaction

#: Where the transit service accepts taps (defined by the transit issue).
TAPS_PATH = "/api/v1/transit/taps"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: RFC 7523 wants short-lived assertions; servers commonly reject more than 5 minutes.
ASSERTION_LIFETIME = 300
#: Refresh this long before the token's expiry, so a request never carries a dying token.
TOKEN_REFRESH_MARGIN = 30


class TerminalError(CardReaderError):
    """Talking to the backend API failed."""


class ApiConnectionError(TerminalError):
    """The API or token endpoint could not be reached."""


class TokenError(TerminalError):
    """The token endpoint refused the terminal's credentials (RFC 6749 section 5.2 error)."""

    def __init__(self, status: int, error: str, description: str | None) -> None:
        """Keep the OAuth ``error`` code and description."""
        text = f"token request failed ({status}): {error}"
        super().__init__(f"{text}: {description}" if description else text)
        self.status = status
        self.error = error
        self.description = description


class ApiProblem(TerminalError):
    """The API answered with an RFC 9457 problem (or another non-2xx response)."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        """Keep the whole problem object; ``type``, ``title`` and ``detail`` are shortcuts."""
        self.status = status
        self.problem = problem
        self.type = str(problem.get("type", "about:blank"))
        self.title = str(problem.get("title", "HTTP error"))
        detail = problem.get("detail")
        self.detail = None if detail is None else str(detail)
        message = f"{status} {self.title}"
        if self.detail:
            message += f": {self.detail}"
        if self.type != "about:blank":
            message += f" [{self.type}]"
        super().__init__(message)


@dataclass
class _Token:
    value: str
    expires_at: float


def load_private_key(path: str | Path) -> ec.EllipticCurvePrivateKey:
    """Load the terminal's unencrypted PEM P-256 private key."""
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise TerminalError(f"cannot load terminal key {path}: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise TerminalError(f"terminal key {path} is not an EC P-256 private key")
    return key


def public_jwks(key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    """The terminal's public key as a JWK set, to register the terminal as an OAuth client.

    ``kid`` is the RFC 7638 thumbprint, the value :class:`TerminalClient` puts in assertions.
    """
    jwk = ECKey.import_key(key.public_key())
    public = jwk.as_dict(private=False)
    public.update(kid=jwk.thumbprint(), use="sig", alg="ES256")
    return {"keys": [public]}


def generate_key_file(path: str | Path, *, overwrite: bool = False) -> ec.EllipticCurvePrivateKey:
    """Create a new P-256 terminal key as an unencrypted PKCS#8 PEM file, readable by owner only."""
    target = Path(path)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(target, flags, 0o600)
    except FileExistsError as exc:
        raise TerminalError(f"{target} already exists (use overwrite to replace it)") from exc
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return key


class TerminalClient:
    """OAuth client credentials of one terminal, and the API calls it makes."""

    def __init__(
        self,
        *,
        client_id: str,
        token_url: str,
        api_base: str,
        private_key: ec.EllipticCurvePrivateKey,
        kid: str | None = None,
        scope: str | None = None,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Configure the terminal; ``kid`` defaults to the key's RFC 7638 thumbprint."""
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise TerminalError("the terminal key must be EC P-256 (ES256)")
        self.client_id = client_id
        self.token_url = token_url
        self.api_base = api_base.rstrip("/")
        self.scope = scope
        self.timeout = timeout
        self._clock = clock
        self._jwk = ECKey.import_key(private_key)
        self.kid = kid or self._jwk.thumbprint()
        self._token: _Token | None = None

    @classmethod
    def from_key_file(cls, key_file: str | Path, **kwargs: Any) -> TerminalClient:
        """Build a client from a PEM key file (other arguments as for the constructor)."""
        return cls(private_key=load_private_key(key_file), **kwargs)

    # --- OAuth ------------------------------------------------------------------------------

    def client_assertion(self) -> str:
        """A fresh RFC 7523 client assertion (ES256 JWT, single use, 5 minutes at most)."""
        now = int(self._clock())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.token_url,
            "jti": secrets.token_urlsafe(24),
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
        }
        header = {"alg": "ES256", "kid": self.kid, "typ": "JWT"}
        return jwt.encode(header, claims, self._jwk, algorithms=["ES256"])

    def access_token(self) -> str:
        """A valid access token, from the cache or a new client_credentials request."""
        now = self._clock()
        if self._token is not None and now < self._token.expires_at:
            return self._token.value
        form = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": self.client_assertion(),
        }
        if self.scope:
            form["scope"] = self.scope
        body = urllib.parse.urlencode(form).encode("ascii")
        request = urllib.request.Request(
            self.token_url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            },
        )
        status, _ctype, payload = self._open(request)
        data = _json_object(payload)
        if status != 200:
            error = data.get("error") if data else None
            description = data.get("error_description") if data else None
            raise TokenError(
                status,
                str(error or "unexpected response"),
                None if description is None else str(description),
            )
        token = data.get("access_token") if data else None
        if not isinstance(token, str) or not token:
            raise TerminalError("token endpoint answered without an access_token")
        token_type = str(data.get("token_type", "")) if data else ""
        if token_type.lower() != "bearer":
            raise TerminalError(f"unsupported token type {token_type!r}")
        expires_in = data.get("expires_in") if data else None
        lifetime = float(expires_in) if isinstance(expires_in, int | float) else 300.0
        margin = min(TOKEN_REFRESH_MARGIN, lifetime / 2)
        self._token = _Token(token, now + lifetime - margin)
        return token

    # --- API --------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any | None = None) -> Any:
        """Call the API with the bearer token; return the decoded JSON (None if empty).

        A 401 with a cached token drops the token and retries once with a fresh one.
        """
        for attempt in (1, 2):
            token = self.access_token()
            data = None if body is None else json.dumps(body).encode("utf-8")
            headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
            if data is not None:
                headers["Content-Type"] = "application/json"
            request = urllib.request.Request(
                self.api_base + path, data=data, method=method, headers=headers
            )
            status, ctype, payload = self._open(request)
            if status == 401 and attempt == 1:
                self._token = None
                continue
            if 200 <= status < 300:
                if not payload:
                    return None
                try:
                    return json.loads(payload)
                except ValueError as exc:
                    raise TerminalError(f"API answered {status} with invalid JSON") from exc
            problem = _json_object(payload) if "json" in ctype else None
            if problem is None:
                snippet = payload[:200].decode("utf-8", "replace").strip()
                problem = {"title": f"HTTP {status}", "detail": snippet or None}
            raise ApiProblem(status, problem)
        raise AssertionError("unreachable")  # pragma: no cover

    def submit_tap(
        self,
        transaction: SignedTransaction,
        path: str = TAPS_PATH,
        extra: dict[str, Any] | None = None,
    ) -> Any:
        """POST a signed transaction (its JSON form, plus ``extra`` fields) to the API.

        The transit API wants where and which way the gate is (``direction``, ``stop_id``).
        """
        return self.request("POST", path, {**transaction.to_json(), **(extra or {})})

    def tap(
        self,
        card: CitizenCardClient,
        *,
        terminal_id: str,
        amount_fen: int,
        pin: str | None = None,
        path: str = TAPS_PATH,
    ) -> tuple[SignedTransaction, Any]:
        """Read a signed transaction from the card and submit it; return both."""
        transaction = read_transaction(
            card, terminal_id=terminal_id, amount_fen=amount_fen, pin=pin, clock=self._clock
        )
        return transaction, self.submit_tap(transaction, path)

    def _open(self, request: urllib.request.Request) -> tuple[int, str, bytes]:
        """Send a request; return (status, content type, body) for every HTTP status."""
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, response.headers.get_content_type(), response.read()
        except urllib.error.HTTPError as err:
            with err:
                return err.code, err.headers.get_content_type(), err.read()
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiConnectionError(f"cannot reach {request.full_url}: {reason}") from exc


def _json_object(payload: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(payload)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def read_transaction(
    card: CitizenCardClient,
    *,
    terminal_id: str,
    amount_fen: int,
    pin: str | None = None,
    clock: Callable[[], float] = time.time,
) -> SignedTransaction:
    """What the gate does: SELECT, optionally VERIFY the PIN, then SIGN TRANSACTION.

    The unpredictable number comes from ``secrets`` and the timestamp from ``clock``
    (Unix seconds, UTC).
    """
    card.select()
    if pin is not None:
        card.verify_pin(pin)
    return card.sign_transaction(
        terminal_id, secrets.token_bytes(UN_LENGTH), int(clock()), amount_fen
    )
