"""``flask clients …`` and ``flask keys rotate-signing``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from flask.cli import AppGroup

from citizen_card.audit.actions import Actor
from citizen_card.errors import DomainError
from citizen_card.oauth import clients as actions
from citizen_card.oauth.schemas import ClientSchema
from citizen_card.oauth.server import purge_expired
from citizen_card.oauth.tokens import signing_keys

clients_cli = AppGroup("clients", help="Register and manage OAuth clients.")
OPERATOR = Actor.system("cli")


def _fail(exc: DomainError) -> None:
    click.echo(f"error: {exc.detail or exc.title}", err=True)
    sys.exit(1)


@clients_cli.command("create")
@click.option("--name", required=True)
@click.option("--kind", required=True, type=click.Choice(["partner", "terminal", "station"]))
@click.option("--scopes", required=True, help='Space-separated, e.g. "citizens:read wallet:topup".')
@click.option("--organisation", default=None, help="Owner organisation (default: the name).")
@click.option(
    "--jwks",
    "jwks_file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="The client's public JWK set (makes it private_key_jwt).",
)
@click.option("--grant-types", default="client_credentials", show_default=True)
@click.option("--redirect-uri", "redirect_uris", multiple=True)
@click.option("--public", is_flag=True, help="A public app (no secret; code flow with PKCE).")
@click.option(
    "--site", default=None, help="Terminals and stations: the station, clinic or gate id."
)
@click.option("--valid-days", default=365, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the client (and secret) as JSON.")
def create(
    name: str,
    kind: str,
    scopes: str,
    organisation: str | None,
    jwks_file: str | None,
    grant_types: str,
    redirect_uris: tuple[str, ...],
    public: bool,
    site: str | None,
    valid_days: int,
    as_json: bool,
) -> None:
    """Register a client. Its secret is printed now and never again."""
    jwks = json.loads(Path(jwks_file).read_text()) if jwks_file else None
    try:
        client, secret = actions.create_client(
            name=name,
            kind=kind,
            organisation=organisation or name,
            scopes=scopes.split(),
            grant_types=grant_types.split(),
            jwks=jwks,
            redirect_uris=list(redirect_uris),
            auth_method="none" if public else None,
            site=site,
            valid_days=valid_days,
            actor=OPERATOR,
        )
    except DomainError as exc:
        _fail(exc)
        return
    out: dict[str, Any] = dict(ClientSchema().dump(client))
    if secret:
        out["client_secret"] = secret
    if as_json:
        click.echo(json.dumps(out, ensure_ascii=False))
        return
    click.echo(f"client_id:     {client.client_id}")
    if secret:
        click.echo(f"client_secret: {secret}   (shown once; store it now)")
    click.echo(f"auth method:   {client.auth_method}; expires {client.expires_at:%Y-%m-%d}")


@clients_cli.command("list")
@click.option("--kind", default=None, type=click.Choice(["partner", "terminal", "station"]))
@click.option("--json", "as_json", is_flag=True)
def list_(kind: str | None, as_json: bool) -> None:
    """List clients."""
    rows = actions.list_clients(kind=kind)
    if as_json:
        click.echo(json.dumps(ClientSchema(many=True).dump(rows), ensure_ascii=False))
        return
    for c in rows:
        expires = f"{c.expires_at:%Y-%m-%d}"
        click.echo(f"{c.client_id}  {c.kind:8}  {c.status:9}  {expires}  {c.name}  [{c.scopes}]")


@clients_cli.command("suspend")
@click.argument("client_id")
@click.option("--reason", required=True)
def suspend(client_id: str, reason: str) -> None:
    """Suspend a client: its tokens stop working."""
    try:
        actions.set_client_status(client_id, "suspended", actor=OPERATOR, reason=reason)
    except DomainError as exc:
        _fail(exc)
    click.echo(f"{client_id} suspended")


@clients_cli.command("activate")
@click.argument("client_id")
@click.option("--reason", required=True)
def activate(client_id: str, reason: str) -> None:
    """Reactivate a suspended client."""
    try:
        actions.set_client_status(client_id, "active", actor=OPERATOR, reason=reason)
    except DomainError as exc:
        _fail(exc)
    click.echo(f"{client_id} active")


@clients_cli.command("rotate-secret")
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True)
def rotate_secret(client_id: str, as_json: bool) -> None:
    """Give a client a new secret (printed once); the old one stops working."""
    try:
        _client, secret = actions.rotate_secret(client_id, actor=OPERATOR)
    except DomainError as exc:
        _fail(exc)
        return
    click.echo(json.dumps({"client_id": client_id, "client_secret": secret}) if as_json else secret)


@clients_cli.command("purge")
def purge() -> None:
    """Delete expired deny-list and assertion records."""
    click.echo(f"removed {purge_expired()} expired records")


@click.command("rotate-signing")
def rotate_signing() -> None:
    """Add a new token signing key; the old one stays published until its tokens expire."""
    key = signing_keys().rotate()
    click.echo(
        f"new signing key {key.kid}; previous keys stay in /oauth/jwks until their tokens expire"
    )


# -- flask accounts … -------------------------------------------------------------------------
accounts_cli = AppGroup("accounts", help="Residents' and staff's sign-in accounts.")


def _read_password(from_stdin: bool) -> str:
    """A new password from stdin (scripts) or typed twice, hidden (people); never an option."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


@accounts_cli.command("create-staff")
@click.option("--username", required=True)
@click.option("--role", required=True, type=click.Choice(["clerk", "supervisor", "admin"]))
@click.option("--station", required=True, help="The station (site) the staff member works at.")
@click.option("--name", "display_name", default=None, help="Name shown on screens.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def create_staff(
    username: str, role: str, station: str, display_name: str | None, password_stdin: bool
) -> None:
    """Create a staff account (the password is prompted for, or read from stdin)."""
    from citizen_card.oauth import accounts

    password = _read_password(password_stdin)
    try:
        account = accounts.create_staff_account(
            username,
            role=role,
            station=station,
            password=password,
            display_name=display_name,
            actor=OPERATOR,
        )
    except DomainError as exc:
        _fail(exc)
        return
    click.echo(f"staff account {account.id}: {username.strip().lower()} ({role} at {station})")


def _identify(national_id: str | None, username: str | None) -> str:
    if bool(national_id) == bool(username):
        click.echo("error: give exactly one of --national-id or --username", err=True)
        sys.exit(2)
    return national_id or username or ""


@accounts_cli.command("set-password")
@click.option("--national-id", default=None, help="A resident's national ID number.")
@click.option("--username", default=None, help="A staff member's username.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def set_password(national_id: str | None, username: str | None, password_stdin: bool) -> None:
    """Set a password; also lifts the account's sign-in locks and ends its refresh tokens."""
    from citizen_card.oauth import accounts

    _identify(national_id, username)
    password = _read_password(password_stdin)
    try:
        if national_id:
            account = accounts.set_resident_password_by_national_id(
                national_id, password, actor=OPERATOR
            )
        else:
            account = accounts.set_staff_password(username or "", password, actor=OPERATOR)
    except DomainError as exc:
        _fail(exc)
        return
    click.echo(f"password set for account {account.id}")


def _status(national_id: str | None, username: str | None, status: str, reason: str) -> None:
    from citizen_card.oauth import accounts

    account = accounts.find_account(_identify(national_id, username))
    try:
        if account is None:
            raise accounts.AccountNotFound("no account has that login name")
        accounts.set_account_status(account.id, status, actor=OPERATOR, reason=reason)
    except DomainError as exc:
        _fail(exc)
        return
    click.echo(f"account {account.id} {status}")


@accounts_cli.command("disable")
@click.option("--national-id", default=None)
@click.option("--username", default=None)
@click.option("--reason", required=True)
def disable(national_id: str | None, username: str | None, reason: str) -> None:
    """Disable an account: no sign-in, its refresh tokens revoked."""
    _status(national_id, username, "disabled", reason)


@accounts_cli.command("enable")
@click.option("--national-id", default=None)
@click.option("--username", default=None)
@click.option("--reason", required=True)
def enable(national_id: str | None, username: str | None, reason: str) -> None:
    """Re-enable a disabled account."""
    _status(national_id, username, "active", reason)


@accounts_cli.command("unlock")
@click.option("--national-id", default=None)
@click.option("--username", default=None)
def unlock(national_id: str | None, username: str | None) -> None:
    """Lift the sign-in locks on a login name (they also expire by themselves)."""
    from citizen_card.oauth import accounts

    removed = accounts.unlock(_identify(national_id, username), actor=OPERATOR)
    click.echo(f"removed {removed} sign-in counter(s)")
