"""The command line: every command, one-line errors, and the vpcd server end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from card_reader.cli import main
from card_reader.protocol import SignedTransaction
from card_reader.protocol import public_key_from_point
from tests.card_reader.fake_backend import CLIENT_ID
from tests.card_reader.fake_backend import Backend
from tests.card_reader.helpers import CARD_NUMBER
from tests.card_reader.helpers import PIN
from tests.card_reader.helpers import PUK
from tests.card_reader.helpers import PcscStack

REPO_ROOT = Path(__file__).resolve().parents[2]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI in process; return (exit status, stdout, stderr)."""
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def run_module(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m card_reader`` in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "card_reader", *argv],
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def personalized(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A card file personalized through the CLI."""
    path = tmp_path / "card.json"
    assert run(capsys, "card", "new", "--file", str(path))[0] == 0
    status, out, _ = run(
        capsys,
        "personalize",
        "--backend",
        "virtual",
        "--card",
        str(path),
        "--card-number",
        CARD_NUMBER,
        "--name",
        "Li Si 李四",
        "--valid-from",
        "2025-01-01",
        "--pin",
        PIN,
        "--puk",
        PUK,
    )
    assert status == 0
    result = json.loads(out)
    assert result["card_number"] == CARD_NUMBER and result["test_issuer"] and result["locked"]
    return path


def test_card_new(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "card.json"
    assert run(capsys, "card", "new", "--file", str(path)) == (
        0,
        f"blank virtual card written to {path}\n",
        "",
    )
    status, out, err = run(capsys, "card", "new", "--file", str(path))
    assert status == 1 and out == ""
    assert err == f"error: {path} already exists (use overwrite to replace it)\n"
    assert run(capsys, "card", "new", "--file", str(path), "--force")[0] == 0


def test_card_info(personalized: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "card", "info", "--card", str(personalized))
    assert status == 0, err
    info = json.loads(out)
    assert info["status"]["lifecycle"] == "operational"
    assert info["data"]["card_number"] == CARD_NUMBER
    assert info["data"]["holder_name"] == "Li Si 李四"
    assert info["data"]["valid_until"] == "2030-01-01"
    assert info["data"]["card_certificate"]["subject"].startswith("CN=Li Si")
    assert info["data"]["issuer_certificate"]["subject"] == "CN=Citizen Card Test Issuer CA"
    assert info["atr"] == "3B 88 80 01 43 49 54 49 5A 45 4E 31 7E"


def test_card_info_on_a_blank_card(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "blank.json"
    run(capsys, "card", "new", "--file", str(path))
    status, out, _ = run(capsys, "card", "info", "--backend", "virtual", "--card", str(path))
    info = json.loads(out)
    assert status == 0 and info["status"]["lifecycle"] == "personalization"
    assert info["data"]["card_number"] is None and info["data"]["public_key"] is None


def test_pin_commands(personalized: Path, capsys: pytest.CaptureFixture[str]) -> None:
    card = ["--card", str(personalized)]
    assert run(capsys, "pin", "verify", "--pin", PIN, *card) == (0, "PIN verified\n", "")
    assert run(capsys, "pin", "verify", "--pin", "000000", *card) == (
        1,
        "",
        "error: wrong PIN or PUK: 2 tries left\n",
    )
    status, _, err = run(capsys, "pin", "verify", "--pin", "12345", *card)
    assert (status, err) == (1, "error: the PIN is 6 digits\n")
    assert run(capsys, "pin", "change", "--pin", PIN, "--new-pin", "222222", *card)[0] == 0
    for expected in ("2 tries", "1 try", "0 tries"):
        _, _, err = run(capsys, "pin", "verify", "--pin", PIN, *card)
        assert expected in err
    _, _, err = run(capsys, "pin", "verify", "--pin", "222222", *card)
    assert err == "error: blocked: the PIN (or the PUK, and with it the card) is blocked\n"
    assert run(capsys, "pin", "unblock", "--puk", PUK, "--new-pin", "333333", *card) == (
        0,
        "PIN unblocked and replaced\n",
        "",
    )
    assert run(capsys, "pin", "verify", "--pin", "333333", *card)[0] == 0


def test_tap_prints_a_verifiable_transaction(
    personalized: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    card = ["--card", str(personalized)]
    status, out, err = run(capsys, "tap", "--amount", "2.50", "--terminal-id", "gate-9", *card)
    assert status == 0, err
    transaction = SignedTransaction.from_json(json.loads(out))
    assert (transaction.amount_fen, transaction.atc, transaction.terminal_id) == (250, 1, "gate-9")
    _, info, _ = run(capsys, "card", "info", *card)
    key = public_key_from_point(bytes.fromhex(json.loads(info)["data"]["public_key"]))
    transaction.verify(key)
    status, out, _ = run(
        capsys, "tap", "--amount-fen", "7", "--terminal-id", "gate-9", "--pin", PIN, *card
    )
    second = SignedTransaction.from_json(json.loads(out))
    assert second.atc == 2 and second.pin_verified and second.amount_fen == 7


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--amount", "2.505"], "at most two decimals"),
        (["--amount", "abc"], "number of yuan"),
        (["--amount", "1", "--api", "http://127.0.0.1:1"], "--api needs --token-url"),
    ],
)
def test_tap_usage_errors(
    personalized: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    status, _, err = run(capsys, "tap", "--terminal-id", "g", "--card", str(personalized), *args)
    assert status == 2 and message in err


def test_tap_posts_to_the_api(
    personalized: Path,
    capsys: pytest.CaptureFixture[str],
    backend: Backend,
    terminal_key: ec.EllipticCurvePrivateKey,
    tmp_path: Path,
) -> None:
    key_file = tmp_path / "terminal.pem"
    key_file.write_bytes(
        terminal_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    _, info, _ = run(capsys, "card", "info", "--card", str(personalized))
    backend.card_key = public_key_from_point(bytes.fromhex(json.loads(info)["data"]["public_key"]))
    status, out, err = run(
        capsys,
        "tap",
        "--amount-fen",
        "200",
        "--terminal-id",
        "gate-0042",
        "--card",
        str(personalized),
        "--api",
        backend.base,
        "--token-url",
        backend.token_url,
        "--client-id",
        CLIENT_ID,
        "--key",
        str(key_file),
    )
    assert status == 0, err
    result = json.loads(out)
    assert result["response"] == {"accepted": True, "atc": 1}
    assert backend.taps == [result["transaction"]]
    # A problem from the API is one line on stderr.
    backend.card_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    status, out, err = run(
        capsys,
        "tap",
        "--amount-fen",
        "200",
        "--terminal-id",
        "gate-0042",
        "--card",
        str(personalized),
        "--api",
        backend.base,
        "--token-url",
        backend.token_url,
        "--client-id",
        CLIENT_ID,
        "--key",
        str(key_file),
    )
    assert status == 1 and out == ""
    assert err == (
        "error: 422 Invalid Card Signature: the card signature does not verify"
        " [/problems/transit/invalid-card-signature]\n"
    )


def test_backend_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "card", "info", "--backend", "virtual")
    assert status == 2 and "needs --card FILE" in err
    status, _, err = run(capsys, "card", "info", "--card", str(tmp_path / "none.json"))
    assert (status, err) == (1, f"error: no virtual card at {tmp_path / 'none.json'}\n")
    status, _, err = run(capsys, "personalize", "--issuer-key", "k", "--card", "x")
    assert status == 2 and "go together" in err


def test_personalize_with_a_given_issuer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from card_reader.issuer import Issuer

    issuer = Issuer.generate_test_issuer("City Issuer CA")
    key_file, cert_file = tmp_path / "issuer.pem", tmp_path / "issuer.crt"
    key_file.write_bytes(
        issuer.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_file.write_bytes(issuer.certificate.public_bytes(serialization.Encoding.PEM))
    card = tmp_path / "card.json"
    run(capsys, "card", "new", "--file", str(card))
    status, out, err = run(
        capsys,
        "personalize",
        "--card",
        str(card),
        "--pin",
        PIN,
        "--puk",
        PUK,
        "--issuer-key",
        str(key_file),
        "--issuer-cert",
        str(cert_file),
    )
    assert status == 0, err
    assert json.loads(out)["issuer"] == "CN=City Issuer CA"
    _, info, _ = run(capsys, "card", "info", "--card", str(card))
    assert json.loads(info)["data"]["card_certificate"]["issuer"] == "CN=City Issuer CA"


def test_bench_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(
        capsys, "bench", "--backend", "virtual", "--rounds", "50", "--transactions", "5", "--json"
    )
    assert status == 0, err
    timings = json.loads(out)
    assert [t["samples"] for t in timings] == [50, 5, 5]
    assert all(0 < t["median_us"] <= t["p99_us"] for t in timings)


def test_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    result = run_module("pin", "verify", "--pin", PIN, "--card", str(tmp_path / "missing.json"))
    assert result.returncode == 1
    assert result.stderr == f"error: no virtual card at {tmp_path / 'missing.json'}\n"
    result = run_module("readers", env={"PCSCLITE_CSOCK_NAME": "/nonexistent/pcscd.comm"})
    assert result.returncode == 1
    assert result.stderr.startswith("error: no PC/SC service: pcscd is not running")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    result = run_module("pin", "verify", "--card", str(tmp_path / "x.json"))  # no tty to prompt
    assert result.returncode == 2 and "no terminal to prompt on" in result.stderr


@pytest.mark.pcsc
def test_vpcd_server_and_pcsc_backend(
    personalized: Path, capsys: pytest.CaptureFixture[str], pcsc_stack: PcscStack
) -> None:
    from card_reader import pcsc

    spare = [
        n
        for n in pcsc.list_readers()
        if n.startswith("Virtual PCD") and n != pcsc_stack.reader_name
    ]
    assert spare and pcsc.wait_for_removal(spare[0], 2)
    name = spare[0]
    port = str(29563 + int(name.split()[-1]))
    server = subprocess.Popen(
        [sys.executable, "-m", "card_reader", "vpcd", "--card", str(personalized), "--port", port],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert pcsc.wait_for_card(name, 10) == name
        status, out, err = run(capsys, "readers")
        assert status == 0 and f"{name}\tcard 3B 88 80 01" in out
        status, out, err = run(capsys, "card", "info", "--backend", "pcsc", "--reader", name)
        assert status == 0, err
        assert json.loads(out)["data"]["card_number"] == CARD_NUMBER
        status, out, err = run(
            capsys, "tap", "--amount-fen", "5", "--terminal-id", "g1", "--backend", "pcsc",
            "--reader", name,
        )  # fmt: skip
        assert status == 0, err
        assert json.loads(out)["atc"] == 1
    finally:
        server.send_signal(signal.SIGTERM)
        stdout, stderr = server.communicate(timeout=10)
    assert server.returncode == 0, stderr
    assert "serving" in stderr and "Traceback" not in stderr
    assert pcsc.wait_for_removal(name, 2)
    # The served card's file has the new ATC: the bridge persisted it.
    assert json.loads(personalized.read_text())["atc"] == 1


def test_terminal_keygen_and_jwks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from joserfc import jwt
    from joserfc.jwk import KeySet

    from card_reader.terminal import TerminalClient

    key_file = tmp_path / "terminal.pem"
    status, out, err = run(capsys, "terminal", "keygen", "--key", str(key_file))
    assert status == 0 and "written" in err
    assert key_file.stat().st_mode & 0o777 == 0o600
    jwks = json.loads(out)
    (jwk,) = jwks["keys"]
    assert {jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]} == {"EC", "P-256", "ES256", "sig"}
    assert "d" not in jwk
    assert json.loads(run(capsys, "terminal", "jwks", "--key", str(key_file))[1]) == jwks
    status, _, err = run(capsys, "terminal", "keygen", "--key", str(key_file))
    assert status == 1 and "already exists" in err
    # What a server holding only this JWKS needs to check the terminal's assertions.
    client = TerminalClient.from_key_file(
        key_file, client_id="t", token_url="https://api.example/oauth/token", api_base="x"
    )
    token = jwt.decode(client.client_assertion(), KeySet.import_key_set(jwks), ["ES256"])
    assert token.header["kid"] == jwk["kid"] == client.kid
