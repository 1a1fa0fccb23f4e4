"""The terminal client against a small real HTTP server (stdlib http.server, no mocks).

The server checks the private_key_jwt client assertion with joserfc and the terminal's
public key, issues bearer tokens, and verifies posted taps with the card's public key, the
way the backend will.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt
from joserfc.jwk import ECKey

from card_reader.card import CitizenCardClient
from card_reader.terminal import ApiConnectionError
from card_reader.terminal import ApiProblem
from card_reader.terminal import TerminalClient
from card_reader.terminal import TerminalError
from card_reader.terminal import TokenError
from card_reader.terminal import load_private_key
from card_reader.terminal import read_transaction
from tests.card_reader.fake_backend import CLIENT_ID
from tests.card_reader.fake_backend import Backend
from tests.card_reader.helpers import CARD_NUMBER
from tests.card_reader.helpers import PIN
from tests.card_reader.helpers import Issued


def make_client(backend: Backend, key: ec.EllipticCurvePrivateKey, **kwargs: Any) -> TerminalClient:
    return TerminalClient(
        client_id=kwargs.pop("client_id", CLIENT_ID),
        token_url=backend.token_url,
        api_base=backend.base,
        private_key=key,
        **kwargs,
    )


def test_client_assertion_is_rfc7523(
    backend: Backend, terminal_key: ec.EllipticCurvePrivateKey
) -> None:
    client = make_client(backend, terminal_key, clock=lambda: 1_767_225_600.7)
    token = jwt.decode(client.client_assertion(), backend.terminal_key, ["ES256"])
    assert token.header == {"alg": "ES256", "kid": client.kid, "typ": "JWT"}
    assert client.kid == ECKey.import_key(terminal_key).thumbprint()
    claims = token.claims
    assert claims["iss"] == claims["sub"] == CLIENT_ID
    assert claims["aud"] == backend.token_url
    assert claims["iat"] == 1_767_225_600 and claims["exp"] == 1_767_225_600 + 300
    assert len(claims["jti"]) >= 32
    second = jwt.decode(client.client_assertion(), backend.terminal_key, ["ES256"])
    assert second.claims["jti"] != claims["jti"]


def test_tap_end_to_end(
    backend: Backend, terminal_key: ec.EllipticCurvePrivateKey, issued: Issued
) -> None:
    backend.card_key = issued.public_key
    client = make_client(backend, terminal_key, scope="transit:tap")
    card = CitizenCardClient(issued.h.reader)
    transaction, result = client.tap(card, terminal_id="gate-0042", amount_fen=200)
    assert result == {"accepted": True, "atc": 1}
    (posted,) = backend.taps
    assert posted == transaction.to_json()
    assert set(posted) == {
        "card_number",
        "atc",
        "terminal_id",
        "unpredictable_number",
        "timestamp",
        "amount_fen",
        "pin_verified",
        "signature",
    }
    assert posted["card_number"] == CARD_NUMBER and posted["pin_verified"] is False
    assert abs(posted["timestamp"] - time.time()) < 60
    (form,) = backend.token_requests
    assert form["grant_type"] == "client_credentials"
    assert form["client_id"] == CLIENT_ID and form["scope"] == "transit:tap"
    # A second tap, with the PIN, reuses the cached token.
    transaction, result = client.tap(card, terminal_id="gate-0042", amount_fen=300, pin=PIN)
    assert result["atc"] == 2 and transaction.pin_verified
    assert len(backend.token_requests) == 1


def test_token_is_refreshed_before_expiry(
    backend: Backend, terminal_key: ec.EllipticCurvePrivateKey
) -> None:
    now = [time.time() - 100]  # the server checks iat against its own clock
    backend.expires_in = 120
    client = make_client(backend, terminal_key, clock=lambda: now[0])
    first = client.access_token()
    assert client.access_token() == first
    now[0] += 89  # 120 s lifetime, 30 s margin: still cached
    assert client.access_token() == first
    now[0] += 2
    assert client.access_token() != first
    assert len(backend.token_requests) == 2


def test_problem_json_becomes_api_problem(
    backend: Backend, terminal_key: ec.EllipticCurvePrivateKey, issued: Issued
) -> None:
    backend.card_key = ec.generate_private_key(ec.SECP256R1()).public_key()  # wrong card key
    client = make_client(backend, terminal_key)
    card = CitizenCardClient(issued.h.reader)
    transaction = read_transaction(card, terminal_id="gate-0042", amount_fen=200)
    with pytest.raises(ApiProblem) as problem:
        client.submit_tap(transaction)
    err = problem.value
    assert err.status == 422
    assert err.title == "Invalid Card Signature"
    assert err.type == "/problems/transit/invalid-card-signature"
    assert err.detail == "the card signature does not verify"
    assert err.problem["code"] == "sig"
    assert str(err) == (
        "422 Invalid Card Signature: the card signature does not verify"
        " [/problems/transit/invalid-card-signature]"
    )


def test_non_json_error_and_unknown_route(
    backend: Backend, terminal_key: ec.EllipticCurvePrivateKey
) -> None:
    client = make_client(backend, terminal_key)
    with pytest.raises(ApiProblem) as problem:
        client.request("POST", "/api/v1/boom", {})
    assert problem.value.status == 500 and "internal error" in str(problem.value)
    with pytest.raises(ApiProblem, match="404 Not Found"):
        client.request("POST", "/api/v1/nothing", {})


def test_rejected_token_is_renewed_once(
    backend: Backend, terminal_key: ec.EllipticCurvePrivateKey, issued: Issued
) -> None:
    backend.card_key = issued.public_key
    client = make_client(backend, terminal_key)
    client.access_token()
    backend.tokens.clear()  # the server forgot (or revoked) every token
    card = CitizenCardClient(issued.h.reader)
    _transaction, result = client.tap(card, terminal_id="gate-0042", amount_fen=1)
    assert result["accepted"]
    assert len(backend.token_requests) == 2


def test_token_endpoint_refusal_is_token_error(backend: Backend) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1())  # not the registered key
    client = make_client(backend, stranger)
    with pytest.raises(TokenError) as refused:
        client.access_token()
    assert refused.value.status == 401 and refused.value.error == "invalid_client"
    assert "bad assertion signature" in (refused.value.description or "")


def test_wrong_client_id_is_refused(
    backend: Backend, terminal_key: ec.EllipticCurvePrivateKey
) -> None:
    client = make_client(backend, terminal_key, client_id="someone-else")
    with pytest.raises(TokenError, match="invalid_client"):
        client.access_token()


def test_unreachable_api() -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    client = TerminalClient(
        client_id=CLIENT_ID,
        token_url=f"http://127.0.0.1:{port}/oauth/token",
        api_base=f"http://127.0.0.1:{port}",
        private_key=ec.generate_private_key(ec.SECP256R1()),
        timeout=2,
    )
    with pytest.raises(ApiConnectionError, match="cannot reach"):
        client.access_token()


def test_key_loading(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = tmp_path / "terminal.pem"
    path.write_bytes(pem)
    loaded = load_private_key(path)
    assert loaded.private_numbers() == key.private_numbers()
    client = TerminalClient.from_key_file(
        path, client_id="t", token_url="http://127.0.0.1:1/t", api_base="http://127.0.0.1:1"
    )
    assert client.kid == ECKey.import_key(key).thumbprint()
    other = tmp_path / "p384.pem"
    other.write_bytes(
        ec.generate_private_key(ec.SECP384R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(TerminalError, match="P-256"):
        load_private_key(other)
    with pytest.raises(TerminalError, match="cannot load"):
        load_private_key(tmp_path / "missing.pem")
