"""Posting money: balanced entries, no overdraft under concurrency, and verification.

Balances move in the same statement that checks them (``UPDATE … SET balance = balance + x
WHERE … AND balance + x >= 0``), which takes the account row's lock until commit: two debits
racing on one wallet queue on that row, and the second sees the first's result. Only such
guarded accounts (no overdraft) keep a cached balance, locked in id order (no deadlock); the
city's own accounts are the sum of their postings, so no gate waits on the revenue row.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime

from sqlalchemy import DateTime
from sqlalchemy import func
from sqlalchemy import literal
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from citizen_card.audit.actions import Actor
from citizen_card.bulk import Step
from citizen_card.bulk import new_ids_step
from citizen_card.bulk import sql
from citizen_card.errors import Conflict
from citizen_card.errors import DomainError
from citizen_card.extensions import db
from citizen_card.ledger.models import JournalEntry
from citizen_card.ledger.models import LedgerAccount
from citizen_card.ledger.models import Posting

WALLET = "wallet"
TOPUP_CLEARING = "topup_clearing"
REVENUE = "revenue"


class InsufficientFunds(Conflict):
    """The wallet cannot pay this amount."""

    code = "INSUFFICIENT_FUNDS"
    title = "Insufficient balance"
    title_zh = "余额不足"


class UnbalancedEntry(DomainError):
    """A programming error: postings that do not sum to zero (never reaches a database)."""

    status = 500
    code = "UNBALANCED_ENTRY"
    title = "Unbalanced ledger entry"
    title_zh = "账目不平衡"


def _now() -> datetime:
    return datetime.now(UTC)


def get_account(kind: str, owner: str, *, allow_negative: bool) -> LedgerAccount:
    """The account (kind, owner), opened on first use; safe when two requests open it at once."""
    query = select(LedgerAccount).where(LedgerAccount.kind == kind, LedgerAccount.owner == owner)
    account = db.session.scalars(query).first()
    if account is not None:
        return account
    try:
        with db.session.begin_nested():
            account = LedgerAccount(
                kind=kind,
                owner=owner,
                balance_fen=0,
                allow_negative=allow_negative,
                created_at=_now(),
            )
            db.session.add(account)
    except IntegrityError:
        account = db.session.scalars(query).one()
    return account


def wallet_of(citizen_id: int) -> LedgerAccount:
    """A citizen's wallet (balances follow the citizen, not the card)."""
    return get_account(WALLET, f"citizen:{citizen_id}", allow_negative=False)


@dataclass(frozen=True)
class Leg:
    """One side of a movement: an account and a signed amount in fen (+ credits it)."""

    account: LedgerAccount
    amount_fen: int


def post(
    kind: str,
    legs: Sequence[Leg],
    *,
    actor: Actor,
    memo: str | None = None,
    reference: str | None = None,
) -> JournalEntry:
    """Write one balanced entry and move the cached balances; the caller commits.

    Raises InsufficientFunds (nothing written) when an account may not go negative.
    """
    if len(legs) < 2:
        raise UnbalancedEntry("an entry needs at least two postings")
    for leg in legs:
        if type(leg.amount_fen) is not int or leg.amount_fen == 0:
            raise UnbalancedEntry("amounts are non-zero integers of fen")
    if sum(leg.amount_fen for leg in legs) != 0:
        raise UnbalancedEntry("postings must sum to zero")
    # Guarded accounts (no overdraft) move in id order, so two entries lock shared accounts
    # in the same order (no deadlock) and nothing is written before a refusal.
    guarded = sorted(
        (leg for leg in legs if not leg.account.allow_negative), key=lambda leg: leg.account.id
    )
    # With one guarded account its refusal comes before any write: no SAVEPOINT round trips.
    scope = db.session.begin_nested() if len(guarded) > 1 else nullcontext()
    with scope:
        # Only guarded accounts keep a cached balance: it is what makes the overdraft check
        # atomic. The city's accounts (revenue, clearing) take a posting from every tap in the
        # city; updating one cached row for each would queue every gate behind one lock, so
        # their balance is the sum of their postings.
        for leg in guarded:
            _move(leg)
        entry = JournalEntry(
            kind=kind,
            memo=memo,
            reference=reference,
            actor=f"{actor.type}:{actor.id}",
            created_at=_now(),
        )
        db.session.add(entry)
        db.session.flush()
        db.session.add_all(
            Posting(entry_id=entry.id, account_id=leg.account.id, amount_fen=leg.amount_fen)
            for leg in legs
        )
        db.session.flush()
    for leg in legs:
        db.session.expire(leg.account, ["balance_fen"])
    return entry


def _move(leg: Leg) -> int:
    """Move one account's cached balance, refusing an overdraft; returns the new balance."""
    table = LedgerAccount.__table__
    moved = db.session.execute(
        update(LedgerAccount)
        .where(
            LedgerAccount.id == leg.account.id,
            or_(
                LedgerAccount.allow_negative,
                LedgerAccount.balance_fen + literal(leg.amount_fen) >= 0,
            ),
        )
        .values(balance_fen=LedgerAccount.balance_fen + leg.amount_fen)
        .returning(table.c.balance_fen)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if moved is None:
        raise InsufficientFunds(
            f"the balance cannot cover {-leg.amount_fen} fen",
            needed_fen=-leg.amount_fen,
            balance_fen=db.session.scalar(
                select(LedgerAccount.balance_fen).where(LedgerAccount.id == leg.account.id)
            ),
        )
    return int(moved)


# -- hot paths (citizen_card.bulk): many entries, few round trips ---------------------------
_LOCK_WALLETS = sql(
    "SELECT owner, id, balance_fen FROM ledger_account WHERE kind = 'wallet'"
    " AND owner IN :owners ORDER BY id FOR UPDATE",
    lists=["owners"],
)
_CARD_OWNERS = "SELECT 'citizen:' || citizen_id FROM card WHERE card_number IN :numbers"
_LOCK_CARD_WALLETS = sql(
    f"SELECT owner, id, balance_fen FROM ledger_account WHERE kind = 'wallet' AND owner IN"
    f" ({_CARD_OWNERS}) ORDER BY id FOR UPDATE",
    lists=["numbers"],
    # As a semi-join PostgreSQL walked every wallet; an array of owners is an index lookup.
    postgresql="SELECT owner, id, balance_fen FROM ledger_account WHERE kind = 'wallet'"
    f" AND owner = ANY(ARRAY({_CARD_OWNERS})) ORDER BY id FOR UPDATE",
)
_INSERT_ENTRY = sql(
    "INSERT INTO ledger_entry (id, kind, memo, reference, actor, created_at)"
    " VALUES (:id, :kind, :memo, :reference, :actor, :created_at)",
    types={"created_at": DateTime(timezone=True)},
)
_INSERT_POSTING = sql(
    "INSERT INTO ledger_posting (entry_id, account_id, amount_fen)"
    " VALUES (:entry_id, :account_id, :amount_fen)"
)
_MOVE = sql(
    "UPDATE ledger_account SET balance_fen = balance_fen + :delta"
    " WHERE id = :id AND balance_fen + :delta >= 0 RETURNING id",
    postgresql="UPDATE ledger_account AS a SET balance_fen = a.balance_fen + m.delta"
    " FROM unnest(:id::bigint[], :delta::bigint[]) AS m(id, delta)"
    " WHERE a.id = m.id AND a.balance_fen + m.delta >= 0 RETURNING a.id",
    arrays=True,
)


def lock_wallets_step(citizen_ids: Sequence[int]) -> Step:
    """A bulk step locking these citizens' wallets in id order (see :func:`locked_wallets`).

    Run it before reading anything the wallets' money decides: whoever moves a wallet's money
    holds its row lock until commit, so the reads after it are current.
    """
    return Step(_LOCK_WALLETS, {"owners": sorted({f"citizen:{c}" for c in citizen_ids})})


def lock_card_wallets_step(card_numbers: Sequence[str]) -> Step:
    """:func:`lock_wallets_step` for the holders of these cards (no read of the cards first)."""
    return Step(_LOCK_CARD_WALLETS, {"numbers": sorted(set(card_numbers))})


def locked_wallets(step: Step) -> dict[int, tuple[int, int]]:
    """citizen id -> (wallet account id, balance in fen), for wallets that exist."""
    return {int(owner.split(":", 1)[1]): (int(i), int(b)) for owner, i, b in step.rows}


@dataclass(frozen=True)
class NewEntry:
    """An entry for :func:`entry_steps`; legs are (account id, signed fen, guarded)."""

    kind: str
    legs: tuple[tuple[int, int, bool], ...]
    memo: str | None = None
    reference: str | None = None

    def __post_init__(self) -> None:
        if len(self.legs) < 2:
            raise UnbalancedEntry("an entry needs at least two postings")
        if any(type(a) is not int or a == 0 for _, a, _ in self.legs):
            raise UnbalancedEntry("amounts are non-zero integers of fen")
        if sum(a for _, a, _ in self.legs) != 0:
            raise UnbalancedEntry("postings must sum to zero")


def entry_ids_step(count: int) -> Step:
    """Reserve ids for up to ``count`` entries of :func:`entry_steps` (with the other reads)."""
    return new_ids_step("ledger_entry", count)


def entry_steps(
    entries: Sequence[NewEntry], ids: Sequence[int], *, actor: Actor
) -> tuple[Step, Step, Step]:
    """Steps writing the entries under reserved ids, their postings, and the guarded balances'
    moves (one per account), all for one run.

    The caller holds the guarded accounts' locks (:func:`lock_wallets_step`) and has checked
    the balances; :func:`check_moves` proves no move was refused.
    """
    now = _now()
    heads = [
        {
            "id": entry_id,
            "kind": e.kind,
            "memo": e.memo,
            "reference": e.reference,
            "actor": f"{actor.type}:{actor.id}",
            "created_at": now,
        }
        for e, entry_id in zip(entries, ids, strict=False)
    ]
    postings = [
        {"entry_id": entry_id, "account_id": account, "amount_fen": amount}
        for entry, entry_id in zip(entries, ids, strict=False)
        for account, amount, _guarded in entry.legs
    ]
    deltas: dict[int, int] = {}
    for entry in entries:
        for account, amount, guarded in entry.legs:
            if guarded:
                deltas[account] = deltas.get(account, 0) + amount
    moves = [{"id": a, "delta": d} for a, d in sorted(deltas.items()) if d]
    return Step(_INSERT_ENTRY, heads), Step(_INSERT_POSTING, postings), Step(_MOVE, moves)


def check_moves(moves: Step) -> None:
    """Raise InsufficientFunds if a move of :func:`entry_steps` was refused (roll back)."""
    if len(moves.rows) != len(moves.params):
        raise InsufficientFunds("a balance could not cover its debits")


def balance(account: LedgerAccount) -> int:
    """The account's balance in fen: the cached one for guarded accounts, else the postings."""
    if account.allow_negative:
        total = db.session.scalar(
            select(func.sum(Posting.amount_fen)).where(Posting.account_id == account.id)
        )
        return int(total or 0)
    value = db.session.scalar(
        select(LedgerAccount.balance_fen).where(LedgerAccount.id == account.id)
    )
    return int(value or 0)


@dataclass(frozen=True)
class StatementLine:
    """One posting on an account, with its entry."""

    entry_id: int
    kind: str
    amount_fen: int
    memo: str | None
    reference: str | None
    created_at: datetime


def statement(
    account: LedgerAccount, *, limit: int = 50, before_entry: int | None = None
) -> list[StatementLine]:
    """The account's postings, newest first, paged by entry id."""
    query = (
        select(
            Posting.entry_id,
            JournalEntry.kind,
            Posting.amount_fen,
            JournalEntry.memo,
            JournalEntry.reference,
            JournalEntry.created_at,
        )
        .join(JournalEntry, JournalEntry.id == Posting.entry_id)
        .where(Posting.account_id == account.id)
        .order_by(Posting.entry_id.desc())
        .limit(limit)
    )
    if before_entry is not None:
        query = query.where(Posting.entry_id < before_entry)
    return [StatementLine(*row) for row in db.session.execute(query)]


def verify() -> list[str]:
    """Every problem in the books: unbalanced entries, cached balances off their postings."""
    problems: list[str] = []
    unbalanced = db.session.execute(
        select(Posting.entry_id, func.sum(Posting.amount_fen), func.count())
        .group_by(Posting.entry_id)
        .having(or_(func.sum(Posting.amount_fen) != 0, func.count() < 2))
    ).all()
    problems += [
        f"entry {e}: postings sum to {s} fen over {n} posting(s)" for e, s, n in unbalanced
    ]
    empty = db.session.scalars(
        select(JournalEntry.id).where(~JournalEntry.id.in_(select(Posting.entry_id)))
    ).all()
    problems += [f"entry {e}: has no postings" for e in empty]
    sums = (
        select(Posting.account_id, func.sum(Posting.amount_fen).label("total"))
        .group_by(Posting.account_id)
        .subquery()
    )
    drift = db.session.execute(
        select(
            LedgerAccount.id,
            LedgerAccount.kind,
            LedgerAccount.owner,
            LedgerAccount.balance_fen,
            func.coalesce(sums.c.total, 0),
        )
        .outerjoin(sums, sums.c.account_id == LedgerAccount.id)
        .where(
            ~LedgerAccount.allow_negative,  # only guarded accounts keep a cached balance
            LedgerAccount.balance_fen != func.coalesce(sums.c.total, 0),
        )
    ).all()
    problems += [
        f"account {i} ({k} {o}): cached balance {b} fen, postings sum to {t} fen"
        for i, k, o, b, t in drift
    ]
    negative = db.session.execute(
        select(LedgerAccount.id, LedgerAccount.owner, LedgerAccount.balance_fen).where(
            ~LedgerAccount.allow_negative, LedgerAccount.balance_fen < 0
        )
    ).all()
    problems += [f"account {i} ({o}): negative balance {b} fen" for i, o, b in negative]
    return problems
