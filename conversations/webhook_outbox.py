"""The event outbox: a ``webhook_deliveries`` row is the promise to post one event to one
endpoint, written in the transaction of the event itself (``fan_out``), and kept by the
delivery workers (claim, settle) as the outbox keeps replies.

pending ──claim──► sending ──► delivered
   ▲                  │  └───► failed       (410 Gone, or the retry schedule ran out)
   └── retry (schedule)┘  a claim whose worker died is taken again once stale

Per endpoint, one conversation's events go in order: a delivery is not claimed while an
earlier one for the same endpoint and conversation is unsettled (pending or sending).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, insert, or_, select, update
from sqlalchemy.orm import Session, aliased

from conversations.db import rowcount
from conversations.models import Conversation, Event, WebhookDelivery, WebhookEndpoint
from conversations.states import UNSETTLED_EVENT_DELIVERIES, EventDeliveryStatus

# The vocabulary is states.py's, beside the other statuses; short names for this module's SQL.
PENDING = EventDeliveryStatus.PENDING
SENDING = EventDeliveryStatus.SENDING
DELIVERED = EventDeliveryStatus.DELIVERED
FAILED = EventDeliveryStatus.FAILED
UNSETTLED = UNSETTLED_EVENT_DELIVERIES

# Standard Webhooks' schedule: the delay before each attempt, the first one immediate.
DEFAULT_SCHEDULE = "0,5s,5m,30m,2h,5h,10h,14h,20h,24h"
JITTER = 0.1  # ±10 %: endpoints that failed together do not all come back together


@dataclass(frozen=True, slots=True)
class Written:
    event_id: int
    conversation_id: uuid.UUID | None
    type: str


def fan_out(session: Session, written: Sequence[Written], now: datetime) -> list[int]:
    """A pending delivery of each event for every enabled endpoint that wants it. Costs one
    indexed read when no endpoint is enabled."""
    endpoints = session.execute(
        select(WebhookEndpoint.id, WebhookEndpoint.event_types, WebhookEndpoint.service).where(
            WebhookEndpoint.enabled.is_(True)
        )
    ).all()
    if not endpoints or not written:
        return []
    services: dict[uuid.UUID, str] = {}
    if any(e.service for e in endpoints):
        ids = {w.conversation_id for w in written if w.conversation_id is not None}
        services = {
            row.id: row.service
            for row in session.execute(
                select(Conversation.id, Conversation.service).where(Conversation.id.in_(ids))
            )
        }
    rows = [
        {
            "endpoint_id": endpoint.id,
            "event_id": w.event_id,
            "conversation_id": w.conversation_id,
            "status": PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for w in written
        for endpoint in endpoints
        if wants(endpoint.event_types, endpoint.service, w, services)
    ]
    if not rows:
        return []
    return list(
        session.scalars(
            insert(WebhookDelivery).returning(WebhookDelivery.id, sort_by_parameter_order=True),
            rows,
        ).all()
    )


def wants(
    event_types: list[str] | None,
    service: str | None,
    written: Written,
    services: dict[uuid.UUID, str],
) -> bool:
    if event_types and written.type not in event_types:
        return False
    # A service filter applies to conversations; a customer is no one service's.
    if service and written.conversation_id is not None:
        return services.get(written.conversation_id) == service
    return True


def fan_out_event(session: Session, event_id: int, now: datetime) -> list[int]:
    """``fan_out`` for an event written earlier (conversation.finished, at wrap-up)."""
    row = session.execute(
        select(Event.id, Event.conversation_id, Event.type).where(Event.id == event_id)
    ).first()
    if row is None:
        return []
    return fan_out(session, [Written(row.id, row.conversation_id, row.type)], now)


# --- the schedule --------------------------------------------------------------------------


def next_attempt(schedule: Sequence[float], attempts: int, now: datetime) -> datetime | None:
    """When to try again after ``attempts`` attempts; None when the schedule is spent."""
    if attempts >= len(schedule):
        return None
    delay = schedule[attempts] * random.uniform(1 - JITTER, 1 + JITTER)
    return now + timedelta(seconds=delay)


# --- claim and settle ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    endpoint_id: uuid.UUID
    event_id: int
    conversation_id: uuid.UUID | None
    attempts: int
    claim_token: uuid.UUID
    replays: int = 0


def _head_and_due(now: datetime, stale_before: datetime) -> list[object]:
    """A delivery's claimable conditions: due (or a dead worker's stale claim), its endpoint
    enabled, and no earlier unsettled delivery for the same endpoint and conversation."""
    earlier = aliased(WebhookDelivery)
    d = WebhookDelivery
    return [
        or_(
            and_(d.status == PENDING, d.next_attempt_at <= now),
            and_(d.status == SENDING, d.claimed_at < stale_before),
        ),
        exists().where(WebhookEndpoint.id == d.endpoint_id, WebhookEndpoint.enabled.is_(True)),
        ~exists().where(
            earlier.endpoint_id == d.endpoint_id,
            earlier.conversation_id.is_not_distinct_from(d.conversation_id),
            earlier.id < d.id,
            earlier.status.in_(UNSETTLED),
        ),
    ]


def claim(
    session: Session, delivery_id: int, *, now: datetime, stale_before: datetime
) -> Claimed | None:
    """Mark a due head delivery ``sending`` under a fresh token; None if not ours to send."""
    token = uuid.uuid4()
    d = WebhookDelivery
    row = session.execute(
        update(d)
        .where(d.id == delivery_id, *_head_and_due(now, stale_before))  # type: ignore[arg-type]
        .values(
            status=SENDING,
            attempts=d.attempts + 1,
            claim_token=token,
            claimed_at=now,
            updated_at=now,
        )
        .returning(d.id, d.endpoint_id, d.event_id, d.conversation_id, d.attempts, d.replays)
        .execution_options(synchronize_session=False)
    ).first()
    if row is None:
        return None
    return Claimed(
        row.id, row.endpoint_id, row.event_id, row.conversation_id, row.attempts, token, row.replays
    )


def due_heads(
    session: Session,
    *,
    now: datetime,
    stale_before: datetime,
    conversation_ids: Sequence[uuid.UUID | None] | None = None,
    limit: int = 100,
) -> list[int]:
    """Deliveries a claim would take now, oldest first (of the given conversations, if any)."""
    d = WebhookDelivery
    query = select(d.id).where(*_head_and_due(now, stale_before))  # type: ignore[arg-type]
    if conversation_ids is not None:
        known = [c for c in conversation_ids if c is not None]
        matches = [d.conversation_id.in_(known)] if known else []
        if None in conversation_ids:
            matches.append(d.conversation_id.is_(None))
        if not matches:
            return []
        query = query.where(or_(*matches))
    return list(session.scalars(query.order_by(d.id).limit(limit)))


def next_in_line(session: Session, delivered: Claimed) -> int | None:
    """The delivery for the same endpoint and conversation that waited on ``delivered``."""
    d = WebhookDelivery
    return session.scalar(
        select(d.id)
        .where(
            d.endpoint_id == delivered.endpoint_id,
            d.conversation_id.is_not_distinct_from(delivered.conversation_id),
            d.id > delivered.id,
            d.status == PENDING,
        )
        .order_by(d.id)
        .limit(1)
    )


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one POST got: a status code (None when no answer came), its latency, an error."""

    status_code: int | None
    latency_ms: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def settle(
    session: Session,
    claimed: Claimed,
    attempt: Attempt,
    *,
    now: datetime,
    schedule: Sequence[float],
    disable_after: timedelta,
) -> tuple[str, datetime | None]:
    """Record an attempt under the claim's token: delivered, retried per the schedule, or
    failed; a 410 or a receiver failing for ``disable_after`` disables the endpoint.
    Returns (status, next attempt) — status "lost" when the claim was taken over meanwhile."""
    d = WebhookDelivery
    values: dict[str, object] = {
        "last_status_code": attempt.status_code,
        "last_latency_ms": attempt.latency_ms,
        "last_error": attempt.error[:2000] if attempt.error else None,
        "claim_token": None,
        "updated_at": now,
    }
    retry_at: datetime | None = None
    if attempt.ok:
        values |= {"status": DELIVERED, "delivered_at": now}
        status = DELIVERED
    elif attempt.status_code == 410:
        values |= {"status": FAILED}
        status = FAILED
    else:
        retry_at = next_attempt(schedule, claimed.attempts, now)
        status = PENDING if retry_at is not None else FAILED
        values |= {"status": status, "next_attempt_at": retry_at or now}
    moved = session.execute(
        update(d)
        .where(d.id == claimed.id, d.claim_token == claimed.claim_token, d.status == SENDING)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if rowcount(moved) != 1:
        return "lost", None
    _endpoint_health(session, claimed.endpoint_id, attempt, now, disable_after)
    return status, retry_at


def _endpoint_health(
    session: Session,
    endpoint_id: uuid.UUID,
    attempt: Attempt,
    now: datetime,
    disable_after: timedelta,
) -> None:
    e = WebhookEndpoint
    if attempt.ok:
        session.execute(
            update(e)
            .where(e.id == endpoint_id, e.failing_since.is_not(None))
            .values(failing_since=None)
            .execution_options(synchronize_session=False)
        )
        return
    if attempt.status_code == 410:
        disable(session, endpoint_id, "the receiver answered 410 Gone", now)
        return
    session.execute(
        update(e)
        .where(e.id == endpoint_id, e.failing_since.is_(None))
        .values(failing_since=now)
        .execution_options(synchronize_session=False)
    )
    since = session.scalar(select(e.failing_since).where(e.id == endpoint_id))
    if since is not None and now - since >= disable_after:
        said = attempt.error or f"HTTP {attempt.status_code}"
        disable(
            session,
            endpoint_id,
            f"failing since {since.isoformat()} ({disable_after.days} days); last: {said}",
            now,
        )


def disable(session: Session, endpoint_id: uuid.UUID, reason: str, now: datetime) -> None:
    """Stop sending to an endpoint, saying why; its pending deliveries wait for re-enabling."""
    session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.enabled.is_(True))
        .values(enabled=False, disabled_reason=reason[:2000], disabled_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )


def replay(session: Session, endpoint_id: uuid.UUID, delivery_id: int, now: datetime) -> bool:
    """Send a delivery again (a settled one; an unsettled one is made due now). Its
    attempts stay what they were: the history of what the receiver answered."""
    d = WebhookDelivery
    moved = session.execute(
        update(d)
        .where(d.id == delivery_id, d.endpoint_id == endpoint_id, d.status != SENDING)
        .values(status=PENDING, next_attempt_at=now, replays=d.replays + 1, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return rowcount(moved) == 1
