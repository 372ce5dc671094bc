"""``Idempotency-Key``: a retried request returns the first answer instead of acting twice.

The key is claimed (unique per API key name) in the same transaction as the work, so a
concurrent retry waits for the first one and then reads its answer. Errors are not stored:
a request that failed may be retried with the same key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from conversations.db import transaction
from conversations.errors import BadRequest, Conflict, InvalidInput
from conversations.models import IdempotencyKey
from conversations.types import utcnow

MAX_KEY_LENGTH = 255


def request_hash(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def run_once(
    engine: Engine,
    *,
    owner: str,
    key: str | None,
    body: Any,
    work: Callable[[Session], tuple[int, dict[str, Any]]],
) -> tuple[int, dict[str, Any], bool]:
    """Run ``work`` in one transaction; returns (status, body, replayed)."""
    if key is None:
        with transaction(engine) as session:
            return (*work(session), False)
    if not key or len(key) > MAX_KEY_LENGTH:
        raise BadRequest(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters")
    digest = request_hash(body)
    with transaction(engine) as session:
        try:
            with session.begin_nested():
                row = IdempotencyKey(owner=owner, key=key, request_hash=digest, created_at=utcnow())
                session.add(row)
                session.flush()
        except IntegrityError:
            first = session.scalars(
                select(IdempotencyKey).where(
                    IdempotencyKey.owner == owner, IdempotencyKey.key == key
                )
            ).one()
            if first.request_hash != digest:
                raise InvalidInput(
                    "Idempotency-Key was already used with a different request body"
                ) from None
            if first.response is None or first.status_code is None:
                raise Conflict("a request with this Idempotency-Key is in progress") from None
            return first.status_code, first.response, True
        status, response = work(session)
        row.status_code, row.response = status, response
    return status, response, False
