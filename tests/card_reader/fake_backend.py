"""A tiny backend (token endpoint and taps endpoint) on stdlib http.server, for tests.

It checks the private_key_jwt client assertion with joserfc and the terminal's public key,
issues bearer tokens, and verifies posted taps with the card's public key, the way the real
backend will.
"""

from __future__ import annotations

import json
import secrets
import urllib.parse
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt
from joserfc.jwk import ECKey

from card_reader.errors import SignatureError
from card_reader.protocol import SignedTransaction
from card_reader.terminal import CLIENT_ASSERTION_TYPE

CLIENT_ID = "terminal-gate-0042"


class Backend(ThreadingHTTPServer):
    """Token endpoint plus the transit taps endpoint, with what they saw."""

    terminal_key: ECKey
    card_key: ec.EllipticCurvePublicKey | None = None
    expires_in = 600
    token_requests: list[dict[str, str]]
    assertion_ids: set[str]
    tokens: set[str]
    taps: list[dict[str, Any]]

    @property
    def base(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def token_url(self) -> str:
        return self.base + "/oauth/token"


class Handler(BaseHTTPRequestHandler):
    server: Backend

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _send(self, status: int, body: Any, ctype: str = "application/json") -> None:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Bearer error="invalid_token"')
        self.end_headers()
        self.wfile.write(payload)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def _problem(self, status: int, title: str, detail: str, **extra: Any) -> None:
        slug = title.lower().replace(" ", "-")
        body = {
            "type": f"/problems/transit/{slug}",
            "title": title,
            "status": status,
            "detail": detail,
            **extra,
        }
        self._send(status, body, "application/problem+json")

    def do_POST(self) -> None:
        if self.path == "/oauth/token":
            self._token()
        elif self.path == "/api/v1/transit/taps":
            self._tap()
        elif self.path == "/api/v1/boom":
            self._send(500, b"internal error", "text/plain")
        else:
            self._problem(404, "Not Found", self.path)

    def _token(self) -> None:
        form = dict(urllib.parse.parse_qsl(self._body().decode()))
        self.server.token_requests.append(form)

        def refuse(description: str) -> None:
            self._send(401, {"error": "invalid_client", "error_description": description})

        if form.get("grant_type") != "client_credentials":
            return self._send(400, {"error": "unsupported_grant_type"})
        if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
            return refuse("client assertion required")
        try:
            token = jwt.decode(form["client_assertion"], self.server.terminal_key, ["ES256"])
        except Exception as exc:  # joserfc raises several types; any is a refusal
            return refuse(f"bad assertion signature: {exc}")
        claims, header = token.claims, token.header
        registry = jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": CLIENT_ID},
            sub={"essential": True, "value": CLIENT_ID},
            aud={"essential": True, "value": self.server.token_url},
            exp={"essential": True},
            iat={"essential": True},
            jti={"essential": True},
        )
        try:
            registry.validate(claims)
        except Exception as exc:
            return refuse(f"bad assertion claims: {exc}")
        if header.get("kid") != self.server.terminal_key.thumbprint():
            return refuse("unknown kid")
        if claims["exp"] - claims["iat"] > 300:
            return refuse("assertion lives too long")
        if claims["jti"] in self.server.assertion_ids:
            return refuse("assertion replayed")
        self.server.assertion_ids.add(claims["jti"])
        access = secrets.token_urlsafe(16)
        self.server.tokens.add(access)
        lifetime = self.server.expires_in
        body = {"access_token": access, "token_type": "Bearer", "expires_in": lifetime}
        return self._send(200, body)

    def _tap(self) -> None:
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.server.tokens:
            return self._problem(401, "Unauthorized", "bearer token required")
        if self.headers.get_content_type() != "application/json":
            return self._problem(415, "Unsupported Media Type", "send JSON")
        obj = json.loads(self._body())
        self.server.taps.append(obj)
        try:
            transaction = SignedTransaction.from_json(obj)
            assert self.server.card_key is not None
            transaction.verify(self.server.card_key)
        except SignatureError:
            return self._problem(
                422, "Invalid Card Signature", "the card signature does not verify", code="sig"
            )
        except ValueError as exc:
            return self._problem(422, "Invalid Transaction", str(exc))
        return self._send(201, {"accepted": True, "atc": transaction.atc})
