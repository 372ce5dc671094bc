"""``Idempotency-Key``: a retried request returns the first answer instead of acting twice.

The key is claimed (unique per API key name) in the same transaction as the work, so a
concurrent retry waits for the first one and then reads its answer. Errors are not stored:
a request that failed may be retried with the same key.

The stored answer copies what the request created (the customer's address, the opening
text), so the row names its customer and conversation and goes with them when they are
erased or purged. A key is remembered for ``IDEMPOTENCY_KEY_TTL`` (a day, as Stripe does):
retries come within minutes, and the purge sweep deletes older rows
(``scheduler/sweeps.py``); an older row is never
replayed (its key starts over).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from conversations.db import transaction
from conversations.errors import BadRequest, Conflict, InvalidInput
from conversations.models import IdempotencyKey
from conversations.types import utcnow

MAX_KEY_LENGTH = 255


@dataclass(frozen=True, slots=True)
class Answer:
    """What a request answered, and what it created (its stored copy is theirs)."""

    status: int
    body: dict[str, Any]
    customer_id: uuid.UUID | None = None
    conversation_id: uuid.UUID | None = None


def request_hash(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def run_once(
    engine: Engine,
    *,
    owner: str,
    key: str | None,
    body: Any,
    work: Callable[[Session], Answer],
    ttl: timedelta,
) -> tuple[int, dict[str, Any], bool]:
    """Run ``work`` in one transaction; returns (status, body, replayed)."""
    if key is None:
        with transaction(engine) as session:
            answer = work(session)
            return answer.status, answer.body, False
    if not key or len(key) > MAX_KEY_LENGTH:
        raise BadRequest(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters")
    digest = request_hash(body)
    now = utcnow()
    with transaction(engine) as session:
        # An expired claim of this key is forgotten here, even before the purge sweep runs.
        session.execute(
            delete(IdempotencyKey)
            .where(
                IdempotencyKey.owner == owner,
                IdempotencyKey.key == key,
                IdempotencyKey.created_at < now - ttl,
            )
            .execution_options(synchronize_session=False)
        )
        try:
            with session.begin_nested():
                row = IdempotencyKey(owner=owner, key=key, request_hash=digest, created_at=now)
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
        answer = work(session)
        row.status_code, row.response = answer.status, answer.body
        row.customer_id, row.conversation_id = answer.customer_id, answer.conversation_id
    return answer.status, answer.body, False
