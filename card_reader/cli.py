"""Command line: ``python -m card_reader readers|card|pin|personalize|issue|tap|terminal|…``.

Errors print one line on stderr and exit with status 1 (2 for usage errors); no tracebacks.
PINs and PUKs come from ``--pin``/``--puk``/``--new-pin`` or are prompted with getpass.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from decimal import InvalidOperation
from types import FrameType
from typing import Any

from cryptography import x509

from card_reader import BACKENDS
from card_reader import CardReader
from card_reader import open_reader
from card_reader.apdu import AuthenticationBlockedError
from card_reader.apdu import ReferencedDataNotFoundError
from card_reader.apdu import StatusWordError
from card_reader.apdu import VerificationFailedError
from card_reader.card import CitizenCardClient
from card_reader.errors import CardReaderError
from card_reader.protocol import Lifecycle
from card_reader.protocol import Tag
from card_reader.protocol import decode_date
from card_reader.protocol import public_key_to_point

ENV_BACKEND = "CARD_READER_BACKEND"


class UsageError(Exception):
    """Bad command-line input that argparse cannot catch by itself."""


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False))


def _secret(value: str | None, prompt: str) -> str:
    if value is not None:
        return value
    if not sys.stdin.isatty():
        raise UsageError(f"{prompt.rstrip(': ')} not given and no terminal to prompt on")
    return getpass.getpass(prompt)


# --- reader selection ---------------------------------------------------------------------


def _add_backend_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("card reader")
    group.add_argument(
        "--backend",
        choices=BACKENDS,
        help=f"reader backend (default: ${ENV_BACKEND}, else virtual with --card, else pcsc)",
    )
    group.add_argument("--card", metavar="FILE", help="virtual card state file (virtual, vpcd)")
    group.add_argument("--reader", metavar="NAME", help="PC/SC reader name (pcsc, vpcd)")
    group.add_argument("--port", type=int, help="vpcd port (vpcd backend; default 29563)")
    group.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait for a card (default 5)"
    )


def _open(args: argparse.Namespace) -> CardReader:
    backend = args.backend or os.environ.get(ENV_BACKEND) or ("virtual" if args.card else "pcsc")
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r} (from ${ENV_BACKEND})")
    if backend in ("virtual", "vpcd") and not args.card:
        raise UsageError(f"the {backend} backend needs --card FILE")
    return open_reader(
        backend,
        card=args.card if backend != "pcsc" else None,
        reader=args.reader,
        port=args.port,
        timeout=args.timeout,
    )


# --- commands -----------------------------------------------------------------------------


def cmd_readers(args: argparse.Namespace) -> int:
    """List PC/SC readers and whether they hold a card."""
    from card_reader.pcsc import reader_status

    readers = reader_status()
    if not readers:
        print("no PC/SC readers", file=sys.stderr)
        return 1
    for status in readers:
        card = f"card {status.atr.hex(' ').upper()}" if status.card_present else "empty"
        print(f"{status.name}\t{card}")
    return 0


def cmd_card_new(args: argparse.Namespace) -> int:
    """Create a blank virtual card state file."""
    from card_reader.virtual import VirtualCard

    VirtualCard.create(args.file, overwrite=args.force)
    print(f"blank virtual card written to {args.file}")
    return 0


def _certificate_summary(der: bytes) -> dict[str, Any]:
    summary: dict[str, Any] = {"sha256": hashlib.sha256(der).hexdigest(), "size": len(der)}
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        summary["error"] = "not a parseable X.509 certificate"
        return summary
    summary.update(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        not_after=cert.not_valid_after_utc.isoformat(),
    )
    return summary


def cmd_card_info(args: argparse.Namespace) -> int:
    """Print the card's public data and status."""
    with _open(args) as reader:
        client = CitizenCardClient(reader)
        lifecycle = client.select()
        info: dict[str, Any] = {
            "reader": reader.name,
            "atr": reader.atr().hex(" ").upper(),
            "status": client.status().to_json(),
        }
        data: dict[str, Any] = {}

        def optional(tag: Tag) -> bytes | None:
            try:
                return client.read_object(tag)
            except ReferencedDataNotFoundError:
                return None

        for key, tag in (
            ("card_number", Tag.CARD_NUMBER),
            ("holder_name", Tag.HOLDER_NAME),
            ("citizen_ref", Tag.CITIZEN_REF),
        ):
            raw = optional(tag)
            data[key] = None if raw is None else raw.decode("utf-8", "replace")
        for key, tag in (("valid_from", Tag.VALID_FROM), ("valid_until", Tag.VALID_UNTIL)):
            raw = optional(tag)
            data[key] = None if raw is None else decode_date(raw).isoformat()
        point = optional(Tag.PUBLIC_KEY)
        data["public_key"] = None if point is None else point.hex()
        for key, tag in (
            ("card_certificate", Tag.CARD_CERTIFICATE),
            ("issuer_certificate", Tag.ISSUER_CERTIFICATE),
        ):
            raw = optional(tag)
            data[key] = None if raw is None else _certificate_summary(raw)
        info["data"] = data
        if lifecycle == Lifecycle.TERMINATED:
            info["warning"] = "card terminated (PUK blocked)"
    _print_json(info)
    return 0


def cmd_pin_verify(args: argparse.Namespace) -> int:
    """VERIFY the PIN."""
    pin = _secret(args.pin, "PIN: ")
    with _open(args) as reader:
        client = CitizenCardClient(reader)
        client.select()
        client.verify_pin(pin)
    print("PIN verified")
    return 0


def cmd_pin_change(args: argparse.Namespace) -> int:
    """CHANGE REFERENCE DATA for the PIN."""
    old = _secret(args.pin, "current PIN: ")
    new = _secret(args.new_pin, "new PIN: ")
    with _open(args) as reader:
        client = CitizenCardClient(reader)
        client.select()
        client.change_pin(old, new)
    print("PIN changed")
    return 0


def cmd_pin_unblock(args: argparse.Namespace) -> int:
    """RESET RETRY COUNTER with the PUK (and set a new PIN)."""
    puk = _secret(args.puk, "PUK: ")
    new = _secret(args.new_pin, "new PIN: ")
    with _open(args) as reader:
        client = CitizenCardClient(reader)
        client.select()
        client.unblock_pin(puk, new)
    print("PIN unblocked and replaced")
    return 0


def cmd_personalize(args: argparse.Namespace) -> int:
    """Demo personalization: key pair, data, certificates, PIN/PUK, lock."""
    from card_reader.issuer import Issuer
    from card_reader.issuer import personalize
    from card_reader.issuer import random_card_number

    if bool(args.issuer_key) != bool(args.issuer_cert):
        raise UsageError("--issuer-key and --issuer-cert go together")
    issuer = (
        Issuer.load(args.issuer_key, args.issuer_cert)
        if args.issuer_key
        else Issuer.generate_test_issuer()
    )
    pin = _secret(args.pin, "new PIN: ")
    puk = _secret(args.puk, "new PUK: ")
    valid_from = args.valid_from or date.today()
    try:
        valid_until = valid_from.replace(year=valid_from.year + args.valid_years)
    except ValueError:  # 29 February
        valid_until = valid_from.replace(year=valid_from.year + args.valid_years, day=28)
    card_number = args.card_number or random_card_number()
    with _open(args) as reader:
        client = CitizenCardClient(reader)
        public_key = personalize(
            client,
            issuer=issuer,
            card_number=card_number,
            holder_name=args.name,
            citizen_ref=args.citizen_ref,
            valid_from=valid_from,
            valid_until=valid_until,
            pin=pin,
            puk=puk,
            lock=not args.no_lock,
        )
    _print_json(
        {
            "card_number": card_number,
            "public_key": public_key_to_point(public_key).hex(),
            "issuer": issuer.certificate.subject.rfc4514_string(),
            "test_issuer": not args.issuer_key,
            "locked": not args.no_lock,
        }
    )
    return 0


def _terminal_client(args: argparse.Namespace) -> Any:
    from card_reader.terminal import TerminalClient

    missing = [
        flag
        for flag, value in (
            ("--api", args.api),
            ("--token-url", args.token_url),
            ("--client-id", args.client_id),
            ("--key", args.key),
        )
        if not value
    ]
    if missing:
        raise UsageError(f"this needs {', '.join(missing)}")
    return TerminalClient.from_key_file(
        args.key,
        client_id=args.client_id,
        token_url=args.token_url,
        api_base=args.api,
        scope=args.scope,
    )


def cmd_issue(args: argparse.Namespace) -> int:
    """The station flow: request, card key pair, certificate, write, PIN/PUK, lock, confirm."""
    import base64

    from card_reader.terminal import TerminalError

    args.token_url = args.token_url or args.api.rstrip("/") + "/oauth/token"
    client = _terminal_client(args)
    pin = _secret(args.pin, "resident's new PIN: ")
    puk = _secret(args.puk, "resident's new PUK: ")
    request = client.request(
        "POST",
        "/api/v1/cards/issuance",
        {"citizen_id": args.citizen, "replacement": args.replacement},
    )
    request_id = request["id"]
    print(f"issuance request {request_id} opened", file=sys.stderr)
    try:
        with _open(args) as reader:
            card = CitizenCardClient(reader)
            card.select()
            point = public_key_to_point(card.generate_key_pair())
            print("key pair generated on the card", file=sys.stderr)
            data = client.request(
                "POST",
                f"/api/v1/cards/issuance/{request_id}/personalize",
                {"public_key": point.hex()},
            )
            card.write_data(
                card_number=data["card_number"],
                holder_name=data["holder_name"],
                citizen_ref=data["citizen_ref"],
                valid_from=date.fromisoformat(data["valid_from"]),
                valid_until=date.fromisoformat(data["valid_until"]),
                card_certificate=base64.b64decode(data["card_certificate"]),
                issuer_certificate=base64.b64decode(data["issuer_certificate"]),
            )
            card.set_pin_puk(pin, puk)
            card.lock()
            print(f"card {data['card_number']} written and locked", file=sys.stderr)
    except (CardReaderError, UsageError) as exc:
        if not isinstance(exc, TerminalError):
            # Close the request so the station can start over with a new blank card.
            client.request(
                "POST", f"/api/v1/cards/issuance/{request_id}/fail", {"reason": str(exc)[:250]}
            )
        raise
    issued = client.request("POST", f"/api/v1/cards/issuance/{request_id}/complete", {})
    _print_json({"request_id": request_id, **issued})
    return 0


def _amount_fen(args: argparse.Namespace) -> int:
    if args.amount_fen is not None:
        return int(args.amount_fen)
    try:
        yuan = Decimal(args.amount)
    except InvalidOperation:
        raise UsageError(f"--amount must be a number of yuan, got {args.amount!r}") from None
    fen = yuan * 100
    if fen != fen.to_integral_value() or fen < 0:
        raise UsageError("--amount must be non-negative with at most two decimals")
    return int(fen)


def cmd_tap(args: argparse.Namespace) -> int:
    """Sign a transaction with the card; print it, or POST it when --api is given."""
    from card_reader.terminal import TerminalClient
    from card_reader.terminal import read_transaction

    amount = _amount_fen(args)
    pin = _secret(None, "PIN: ") if args.ask_pin else args.pin
    client: TerminalClient | None = None
    if args.api:
        missing = [
            flag
            for flag, value in (
                ("--token-url", args.token_url),
                ("--client-id", args.client_id),
                ("--key", args.key),
            )
            if not value
        ]
        if missing:
            raise UsageError(f"--api needs {', '.join(missing)}")
        client = TerminalClient.from_key_file(
            args.key,
            client_id=args.client_id,
            token_url=args.token_url,
            api_base=args.api,
            scope=args.scope,
        )
    with _open(args) as reader:
        card = CitizenCardClient(reader)
        transaction = read_transaction(
            card, terminal_id=args.terminal_id, amount_fen=amount, pin=pin
        )
    if client is None:
        _print_json(transaction.to_json())
        return 0
    extra = {k: v for k, v in (("direction", args.direction), ("stop_id", args.stop)) if v}
    result = client.submit_tap(transaction, args.path, extra)
    _print_json({"transaction": transaction.to_json(), "response": result})
    return 0


def cmd_terminal_keygen(args: argparse.Namespace) -> int:
    """Create a terminal key and print its public JWKS (for client registration)."""
    from card_reader.terminal import generate_key_file
    from card_reader.terminal import public_jwks

    key = generate_key_file(args.key, overwrite=args.force)
    print(f"terminal key written to {args.key}", file=sys.stderr)
    _print_json(public_jwks(key))
    return 0


def cmd_terminal_jwks(args: argparse.Namespace) -> int:
    """Print the public JWKS of an existing terminal key."""
    from card_reader.terminal import load_private_key
    from card_reader.terminal import public_jwks

    _print_json(public_jwks(load_private_key(args.key)))
    return 0


def cmd_vpcd(args: argparse.Namespace) -> int:
    """Serve a virtual card to pcscd through vpcd until interrupted."""
    from card_reader.virtual import VirtualCard
    from card_reader.vpcd import VPCD_PORT
    from card_reader.vpcd import VpcdBridge
    from card_reader.vpcd import vpcd_reader_name

    card = VirtualCard.load(args.card)
    port = args.port or VPCD_PORT
    bridge = VpcdBridge(card, host=args.host, port=port)

    def stop(signum: int, frame: FrameType | None) -> None:
        bridge.stop()

    signal.signal(signal.SIGTERM, stop)
    print(
        f"serving {args.card} on vpcd {args.host}:{port} "
        f"(reader {vpcd_reader_name(port)!r}); Ctrl-C to remove the card",
        file=sys.stderr,
    )
    try:
        bridge.serve_forever()
    except KeyboardInterrupt:
        bridge.stop()
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Measure APDU and transaction latency through a backend."""
    from card_reader.bench import run

    timings = run(
        args.backend,
        rounds=args.rounds,
        transactions=args.transactions,
        port=args.port,
        reader_name=args.reader,
        in_memory=args.in_memory,
    )
    if args.json:
        _print_json([t.to_json() for t in timings])
        return 0
    for t in timings:
        print(
            f"{t.name}: median {t.median_us:.1f} µs, p99 {t.p99_us:.1f} µs "
            f"(min {t.min_us:.1f}, max {t.max_us:.1f}, n={t.samples})"
        )
    return 0


# --- parser -------------------------------------------------------------------------------


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a YYYY-MM-DD date: {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of every command."""
    parser = argparse.ArgumentParser(
        prog="python -m card_reader", description="Citizen card reader and terminal tools."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("readers", help="list PC/SC readers")
    p.set_defaults(func=cmd_readers)

    card = sub.add_parser("card", help="virtual card files and card information")
    card_sub = card.add_subparsers(dest="card_command", required=True, metavar="ACTION")
    p = card_sub.add_parser("new", help="create a blank virtual card file")
    p.add_argument("--file", required=True, help="state file to create")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=cmd_card_new)
    p = card_sub.add_parser("info", help="print the card's public data and status")
    _add_backend_options(p)
    p.set_defaults(func=cmd_card_info)

    pin = sub.add_parser("pin", help="verify, change or unblock the PIN")
    pin_sub = pin.add_subparsers(dest="pin_command", required=True, metavar="ACTION")
    p = pin_sub.add_parser("verify", help="VERIFY the PIN")
    p.add_argument("--pin", help="the PIN (prompted if omitted)")
    _add_backend_options(p)
    p.set_defaults(func=cmd_pin_verify)
    p = pin_sub.add_parser("change", help="change the PIN")
    p.add_argument("--pin", help="the current PIN (prompted if omitted)")
    p.add_argument("--new-pin", help="the new PIN (prompted if omitted)")
    _add_backend_options(p)
    p.set_defaults(func=cmd_pin_change)
    p = pin_sub.add_parser("unblock", help="reset the PIN with the PUK")
    p.add_argument("--puk", help="the PUK (prompted if omitted)")
    p.add_argument("--new-pin", help="the new PIN (prompted if omitted)")
    _add_backend_options(p)
    p.set_defaults(func=cmd_pin_unblock)

    p = sub.add_parser(
        "personalize", help="demo personalization (test issuer unless --issuer-key/-cert)"
    )
    p.add_argument("--card-number", help="19-digit card number (default: random, Luhn-valid)")
    p.add_argument("--name", default="Demo Citizen", help="holder name")
    p.add_argument("--citizen-ref", default="DEMO-0001", help="citizen reference")
    p.add_argument("--valid-from", type=_date, help="YYYY-MM-DD (default: today)")
    p.add_argument("--valid-years", type=int, default=5, help="validity in years (default 5)")
    p.add_argument("--pin", help="initial PIN (prompted if omitted)")
    p.add_argument("--puk", help="initial PUK (prompted if omitted)")
    p.add_argument("--issuer-key", help="issuer CA private key (PEM)")
    p.add_argument("--issuer-cert", help="issuer CA certificate (PEM or DER)")
    p.add_argument("--no-lock", action="store_true", help="leave the card in personalization")
    _add_backend_options(p)
    p.set_defaults(func=cmd_personalize)

    p = sub.add_parser("tap", help="sign a transaction (and POST it with --api)")
    amount = p.add_mutually_exclusive_group(required=True)
    amount.add_argument("--amount", help="amount in yuan, e.g. 2.50")
    amount.add_argument("--amount-fen", type=int, help="amount in fen, e.g. 250")
    p.add_argument("--terminal-id", required=True, help="this terminal's id")
    p.add_argument("--pin", help="verify this PIN before signing")
    p.add_argument("--ask-pin", action="store_true", help="prompt for the PIN before signing")
    p.add_argument("--api", metavar="URL", help="API base URL; POST the tap there")
    p.add_argument("--token-url", help="OAuth token endpoint")
    p.add_argument("--client-id", help="the terminal's OAuth client id")
    p.add_argument("--key", metavar="PEM", help="the terminal's EC P-256 private key")
    p.add_argument("--scope", help="OAuth scope to request")
    p.add_argument("--path", default="/api/v1/transit/taps", help="tap endpoint path")
    p.add_argument("--direction", choices=("in", "out"), help="transit gates: entry or exit")
    p.add_argument("--stop", help="transit gates: the GTFS stop id of this gate's station")
    _add_backend_options(p)
    p.set_defaults(func=cmd_tap)

    p = sub.add_parser("issue", help="station flow: issue a card to a citizen (needs the API)")
    p.add_argument("--citizen", type=int, required=True, help="the citizen's id")
    p.add_argument("--replacement", action="store_true", help="replace the citizen's card (补卡)")
    p.add_argument("--pin", help="the resident's initial PIN (prompted if omitted)")
    p.add_argument("--puk", help="the resident's PUK (prompted if omitted)")
    p.add_argument("--api", metavar="URL", required=True, help="API base URL")
    p.add_argument("--token-url", help="OAuth token endpoint (default: <api>/oauth/token)")
    p.add_argument("--client-id", required=True, help="the station's OAuth client id")
    p.add_argument("--key", metavar="PEM", required=True, help="the station's EC private key")
    p.add_argument("--scope", default="cards:issue", help="OAuth scope to request")
    _add_backend_options(p)
    p.set_defaults(func=cmd_issue)

    terminal = sub.add_parser("terminal", help="the terminal's OAuth key (private_key_jwt)")
    terminal_sub = terminal.add_subparsers(dest="terminal_command", required=True, metavar="ACTION")
    p = terminal_sub.add_parser("keygen", help="create a P-256 key; print its public JWKS")
    p.add_argument("--key", required=True, metavar="PEM", help="key file to create")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=cmd_terminal_keygen)
    p = terminal_sub.add_parser("jwks", help="print the public JWKS of a terminal key")
    p.add_argument("--key", required=True, metavar="PEM", help="the terminal's key file")
    p.set_defaults(func=cmd_terminal_jwks)

    p = sub.add_parser("vpcd", help="serve a virtual card to pcscd through vpcd")
    p.add_argument("--card", required=True, metavar="FILE", help="virtual card state file")
    p.add_argument("--port", type=int, help="vpcd port (default 29563)")
    p.add_argument("--host", default="127.0.0.1", help="vpcd host (default 127.0.0.1)")
    p.set_defaults(func=cmd_vpcd)

    p = sub.add_parser("bench", help="measure APDU and transaction latency")
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default="vpcd",
        help="vpcd (default) or virtual: a fresh card in this process; pcsc: the blank card "
        "in --reader (e.g. served by 'python -m card_reader vpcd' in another process)",
    )
    p.add_argument("--reader", metavar="NAME", help="PC/SC reader (pcsc backend)")
    p.add_argument(
        "--in-memory", action="store_true", help="no state file (shows the cost of persisting)"
    )
    p.add_argument("--rounds", type=int, default=2000, help="APDU samples (default 2000)")
    p.add_argument("--transactions", type=int, default=300, help="transaction samples")
    p.add_argument("--port", type=int, help="vpcd port (default 29563)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_bench)
    return parser


def _describe(exc: BaseException) -> str:
    if isinstance(exc, VerificationFailedError):
        left = exc.tries_left
        return f"wrong PIN or PUK: {left} {'try' if left == 1 else 'tries'} left"
    if isinstance(exc, AuthenticationBlockedError):
        return "blocked: the PIN (or the PUK, and with it the card) is blocked"
    if isinstance(exc, StatusWordError):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        name = f" {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{name}"
    return str(exc) or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (CardReaderError, OSError, ValueError) as exc:
        print(f"error: {_describe(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
