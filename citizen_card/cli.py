"""Operator commands: ``flask audit …``, ``flask keys …``, ``flask demo load``."""

from __future__ import annotations

import sys
import time
from typing import Any

import click
from flask import Flask
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select
from sqlalchemy import type_coerce
from sqlalchemy import update
from sqlalchemy.types import String

from citizen_card.audit import actions as audit
from citizen_card.extensions import db
from citizen_card.pii import Encrypted
from citizen_card.pii import keyring

audit_cli = AppGroup("audit", help="Seal and verify the hash-chained audit trail.")
keys_cli = AppGroup("keys", help="Manage the personal-data encryption keys.")
demo_cli = AppGroup("demo", help="Demo data for a local run.")
ledger_cli = AppGroup("ledger", help="Check the books.")


@ledger_cli.command("verify")
def ledger_verify() -> None:
    """Prove every entry balances and every cached balance equals its postings; exit 1 if not."""
    from citizen_card.ledger.actions import verify

    problems = verify()
    db.session.rollback()
    if not problems:
        click.echo("ledger OK: every entry balances, every balance equals its postings")
        return
    for problem in problems:
        click.echo(f"BROKEN: {problem}", err=True)
    sys.exit(1)


@audit_cli.command("seal")
@click.option("--every", type=int, default=0, help="Keep sealing every N seconds (0: once).")
def audit_seal(every: int) -> None:
    """Chain new audit events into blocks and print the head hash (record it off-site)."""
    while True:
        result = audit.seal()
        if result.blocks:
            click.echo(
                f"sealed {result.events} events in {len(result.blocks)} block(s); "
                f"head {result.head} (block {result.blocks[-1].id})"
            )
        elif not every:
            click.echo("nothing to seal")
        if not every:
            return
        db.session.remove()
        time.sleep(every)


@audit_cli.command("verify")
@click.option(
    "--anchor", default=None, help="A block hash recorded earlier that must be in the chain."
)
def audit_verify(anchor: str | None) -> None:
    """Recompute the chain; exit 1 and say where it breaks if anything was changed."""
    report = audit.verify(anchor=anchor)
    click.echo(
        f"{report.blocks} blocks, {report.sealed_events} sealed events, "
        f"{report.unsealed_events} not yet sealed; head {report.head or '-'}"
    )
    if report.ok:
        click.echo("audit trail OK")
        return
    for problem in report.problems:
        click.echo(f"BROKEN: {problem}", err=True)
    sys.exit(1)


def encrypted_columns() -> list[tuple[Any, Any, Encrypted]]:
    """Every (table, column, type) in the metadata stored with field encryption."""
    found = []
    for table in db.metadata.sorted_tables:
        for column in table.columns:
            if isinstance(column.type, Encrypted):
                found.append((table, column, column.type))
    return found


@keys_cli.command("rotate")
@click.option("--batch", type=int, default=500, show_default=True)
def keys_rotate(batch: int) -> None:
    """Make a new data key active and re-encrypt every stored value with it."""
    ring = keyring()
    kid = ring.add_key()
    click.echo(f"new active key {kid}")
    total = 0
    for table, column, col_type in encrypted_columns():
        pk = list(table.primary_key.columns)[0]
        raw = type_coerce(column, String)  # the stored ciphertext, not decrypted
        done = 0
        last_pk: Any = None
        while True:
            query = select(pk, raw).where(raw.is_not(None)).order_by(pk).limit(batch)
            if last_pk is not None:
                query = query.where(pk > last_pk)
            rows = db.session.execute(query).all()
            if not rows:
                break
            for row_pk, token in rows:
                token = str(token)
                if ring.key_id_of(token) != kid:
                    plain = ring.decrypt(token, col_type.context)
                    db.session.execute(
                        update(table)
                        .where(pk == row_pk)
                        .values(
                            {
                                column.name: type_coerce(
                                    ring.encrypt(plain, col_type.context), String
                                )
                            }
                        )
                    )
                    done += 1
            db.session.commit()
            last_pk = rows[-1][0]
            click.echo(f"  {table.name}.{column.name}: {done} re-encrypted", err=True)
        total += done
    click.echo(f"re-encrypted {total} values; old keys stay in the keyring for backups")


@demo_cli.command("load")
def demo_load() -> None:
    """Load demo data; safe to run again (it only adds what is missing)."""
    from citizen_card import demo

    # Core data first; services add their own loaders through the plugin's init_app.
    loaders = [
        demo.load_residents,
        demo.load_clients,
        demo.load_cards,
        demo.load_wallets,
        *current_app.extensions.get("citizen_card_demo_loaders", []),
    ]
    for loader in loaders:
        loader()


def init_app(app: Flask) -> None:
    """Register the command groups."""
    from citizen_card.oauth.cli import accounts_cli
    from citizen_card.oauth.cli import clients_cli
    from citizen_card.oauth.cli import rotate_signing

    keys_cli.add_command(rotate_signing)
    app.cli.add_command(clients_cli)
    app.cli.add_command(accounts_cli)
    app.cli.add_command(audit_cli)
    app.cli.add_command(keys_cli)
    app.cli.add_command(demo_cli)
    app.cli.add_command(ledger_cli)
