"""Idempotency keys for every money-moving API.

The same (client, key) with the same body gets the same answer — success or refusal — without
moving money twice; the same key with a different body is a 409. Two requests with one key at
the same instant: the second waits on the first's uncommitted claim (the primary key) and then
replays its answer.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from datetime import UTC
from datetime import datetime
from typing import Any

from flask import request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from citizen_card.errors import DomainError
from citizen_card.extensions import db
from citizen_card.ledger.models import IdempotencyRecord

_KEY_RE = re.compile(r"^[\x21-\x7e]{1,128}$")


class IdempotencyKeyRequired(DomainError):
    """Money-moving requests must carry an Idempotency-Key header."""

    status = 428
    code = "IDEMPOTENCY_KEY_REQUIRED"
    title = "Idempotency-Key header required"
    title_zh = "缺少幂等键（Idempotency-Key）"


class IdempotencyKeyReused(DomainError):
    """The key was used before with a different request."""

    status = 409
    code = "IDEMPOTENCY_KEY_REUSED"
    title = "Idempotency key reused with a different request"
    title_zh = "幂等键已用于其他请求"


def replayed_problem(stored: dict[str, Any]) -> DomainError:
    """The refusal given before to the same request, as an error of the same class shape."""
    cls = type(
        "ReplayedProblem",
        (DomainError,),
        {k: stored[k] for k in ("status", "code", "title", "title_zh", "service")},
    )
    error: DomainError = cls(stored.get("detail"), **stored.get("extensions", {}))
    return error


def idempotency_key() -> str:
    """The request's Idempotency-Key header, validated."""
    key = request.headers.get("Idempotency-Key", "")
    if not key:
        raise IdempotencyKeyRequired(
            "send an Idempotency-Key header (e.g. a UUID) with this request"
        )
    if not _KEY_RE.match(key):
        raise IdempotencyKeyRequired("Idempotency-Key must be 1-128 printable ASCII characters")
    return key


def request_fingerprint(payload: Any) -> str:
    """SHA-256 of the request's canonical JSON (method and path included by the caller)."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def run_once(
    client_id: str, key: str, payload: Any, work: Callable[[], tuple[int, Any]]
) -> tuple[int, Any, bool]:
    """Run ``work`` once per (client, key); return (status, body, replayed).

    ``work`` does its writes in the current transaction and returns a JSON-able body; this
    commits them together with the stored answer. A DomainError from ``work`` is stored (its
    writes rolled back) and raised, now and on every replay.
    """
    fingerprint = request_fingerprint(payload)
    stored = _claim(client_id, key, fingerprint)
    if stored is not None:
        return _replay(stored)
    record = db.session.get(IdempotencyRecord, (client_id, key))
    assert record is not None
    try:
        with db.session.begin_nested():
            status, body = work()
    except DomainError as error:
        record.status = error.status
        record.response = json.dumps(
            {
                "problem": {
                    "status": error.status,
                    "code": error.code,
                    "title": error.title,
                    "title_zh": error.title_zh,
                    "service": error.service,
                    "detail": error.detail,
                    "extensions": error.extensions,
                }
            },
            ensure_ascii=False,
            default=str,
        )
        db.session.commit()
        raise
    record.status = status
    record.response = json.dumps({"body": body}, ensure_ascii=False, default=str)
    db.session.commit()
    return status, body, False


def _claim(client_id: str, key: str, fingerprint: str) -> IdempotencyRecord | None:
    """Claim the key (None), or return the record of an earlier identical request."""
    existing = db.session.get(IdempotencyRecord, (client_id, key))
    if existing is None:
        try:
            with db.session.begin_nested():
                db.session.add(
                    IdempotencyRecord(
                        client_id=client_id,
                        key=key,
                        request_hash=fingerprint,
                        created_at=datetime.now(UTC),
                    )
                )
            return None
        except IntegrityError:
            # Another request holds the key; its commit released us. Read its answer.
            existing = db.session.scalars(
                select(IdempotencyRecord)
                .where(IdempotencyRecord.client_id == client_id, IdempotencyRecord.key == key)
                .execution_options(populate_existing=True)
            ).one()
    if existing.request_hash != fingerprint:
        raise IdempotencyKeyReused("this Idempotency-Key was used for a different request")
    if existing.response is None:
        raise IdempotencyKeyReused(
            "a request with this Idempotency-Key is still in progress", retry=True
        )
    return existing


def _replay(record: IdempotencyRecord) -> tuple[int, Any, bool]:
    stored = json.loads(record.response or "{}")
    if "problem" in stored:
        raise replayed_problem(stored["problem"])
    return int(record.status or 200), stored["body"], True
