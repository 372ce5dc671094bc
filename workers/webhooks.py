"""Post event deliveries to their endpoints, signed per Standard Webhooks.

At least once, as Standard Webhooks promises: a worker that dies mid-post leaves its claim
``sending``, and once that claim is stale the delivery is posted again with the same
``webhook-id``, on which receivers dedupe; a claim counts as an attempt, so a delivery whose
workers keep dying is failed once it was claimed more times than the schedule has attempts.
Whatever goes wrong while posting is recorded as a failed attempt, never left ``sending``.
A delivered event hands over to the next one the same endpoint owes for the same
conversation, in this task, so one conversation's events arrive in order without a broker
round trip between them.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

import httpx
from sqlalchemy import Engine

from conversations import outbound_http, webhook_endpoints, webhook_outbox
from conversations.db import session_factory, transaction
from conversations.metrics import EVENT_DELIVERIES
from conversations.settings import Settings
from conversations.standard_webhooks import sign
from conversations.types import utcnow
from conversations.webhook_bodies import bodies, event_id

log = logging.getLogger(__name__)

CHAIN_SECONDS = 60.0  # a task stops starting new posts after this; it re-wakes the rest


def stale_after(settings: Settings) -> timedelta:
    """A claim older than this belongs to a worker that died: a post's connect, write and
    read phases each get WEBHOOK_TIMEOUT, plus room for the settle."""
    return timedelta(seconds=4 * settings.webhook_timeout + 10)


def time_limit(settings: Settings) -> float:
    return CHAIN_SECONDS + 4 * settings.webhook_timeout


@lru_cache(maxsize=2)
def http_client(allow_private: bool) -> httpx.Client:
    # One per process: connections to a receiver are kept and reused across events. Every
    # connection is to an address outbound_http vetted when it was opened.
    return outbound_http.client(
        allow_private=allow_private,
        timeout=15.0,  # each post passes WEBHOOK_TIMEOUT
        headers={"user-agent": "Dormouse-Webhooks/1"},
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    delivered: int  # posts answered 2xx
    retries: list[tuple[int, datetime]]  # (delivery id, when) to wake again
    more: bool  # the chain ran out of time with work left


def send(
    delivery_id: int,
    *,
    engine: Engine,
    settings: Settings,
    client: httpx.Client | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> Outcome:
    """Post one delivery if it is due and first in line, then the ones it held back."""
    return send_many([delivery_id], engine=engine, settings=settings, client=client, clock=clock)


def send_due(
    conversation_ids: Sequence[uuid.UUID | None] | None,
    *,
    engine: Engine,
    settings: Settings,
    client: httpx.Client | None = None,
    clock: Callable[[], datetime] = utcnow,
    limit: int = 100,
) -> Outcome:
    """Post what is due for these conversations (or everything due)."""
    now = clock()
    with session_factory(engine)() as session:
        heads = webhook_outbox.due_heads(
            session,
            now=now,
            stale_before=now - stale_after(settings),
            conversation_ids=conversation_ids,
            limit=limit,
        )
    outcome = send_many(heads, engine=engine, settings=settings, client=client, clock=clock)
    if len(heads) == limit:
        return Outcome(outcome.delivered, outcome.retries, True)
    return outcome


def send_many(
    delivery_ids: Sequence[int],
    *,
    engine: Engine,
    settings: Settings,
    client: httpx.Client | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> Outcome:
    client = client or http_client(settings.allow_private_targets)
    started = time.monotonic()
    queue = list(delivery_ids)
    delivered = 0
    retries: list[tuple[int, datetime]] = []
    while queue:
        if time.monotonic() - started > CHAIN_SECONDS:
            return Outcome(delivered, retries, True)
        current = queue.pop(0)
        status, follow, retry_at = _send_one(current, engine, settings, client, clock)
        if status == webhook_outbox.DELIVERED:
            delivered += 1
        if retry_at is not None:
            retries.append((current, retry_at))
        if follow is not None:
            queue.append(follow)
    return Outcome(delivered, retries, False)


def _send_one(
    delivery_id: int,
    engine: Engine,
    settings: Settings,
    client: httpx.Client,
    clock: Callable[[], datetime],
) -> tuple[str, int | None, datetime | None]:
    """(status, the next delivery in line if this one settled, the retry time if any)."""
    now = clock()
    with transaction(engine) as session:
        claimed = webhook_outbox.claim(
            session, delivery_id, now=now, stale_before=now - stale_after(settings)
        )
        if claimed is None:
            return "skipped", None, None
        endpoint = webhook_endpoints.get(session, claimed.endpoint_id)
        url = endpoint.url
        secrets = webhook_endpoints.signing_secrets(endpoint, now)
        body = bodies(session, [claimed.event_id]).get(claimed.event_id)
    if body is None:  # the message it names was erased since: nothing left to tell
        attempt = webhook_outbox.Attempt(None, 0, "the event's message no longer exists")
        status = _settle(engine, claimed, attempt, settings, clock, give_up=True)
    elif claimed.attempts > len(settings.webhook_schedule) + claimed.replays:
        # Only stale re-claims get here (a settle fails it when the schedule is spent, and
        # each retry by hand allows one claim more): each worker posting it stopped before it
        # settled. Taken no more, or it is taken forever.
        said = f"claimed {claimed.attempts} times, never settled (its workers stopped): given up"
        attempt = webhook_outbox.Attempt(None, 0, said)
        status = _settle(engine, claimed, attempt, settings, clock, give_up=True)
    else:
        attempt = _post(client, url, secrets, event_id(claimed.event_id), body, settings)
        status = _settle(engine, claimed, attempt, settings, clock)
    log_line = "webhook %s → %r: %s (%s ms)%s"  # the URL quoted: it cannot forge a line
    log.info(
        log_line,
        claimed.id,
        url,
        attempt.status_code or "no answer",
        attempt.latency_ms,
        f" {attempt.error}" if attempt.error else "",
    )
    state, retry_at = status
    EVENT_DELIVERIES.labels("retry" if retry_at is not None else state).inc()
    if state in (webhook_outbox.DELIVERED, webhook_outbox.FAILED):
        with session_factory(engine)() as session:
            return state, webhook_outbox.next_in_line(session, claimed), None
    return state, None, retry_at


def _settle(
    engine: Engine,
    claimed: webhook_outbox.Claimed,
    attempt: webhook_outbox.Attempt,
    settings: Settings,
    clock: Callable[[], datetime],
    *,
    give_up: bool = False,
) -> tuple[str, datetime | None]:
    with transaction(engine) as session:
        return webhook_outbox.settle(
            session,
            claimed,
            attempt,
            now=clock(),
            schedule=[] if give_up else settings.webhook_schedule,
            disable_after=settings.webhook_disable_delta,
        )


def _post(
    client: httpx.Client,
    url: str,
    secrets: Sequence[str],
    webhook_id: str,
    body: dict[str, object],
    settings: Settings,
) -> webhook_outbox.Attempt:
    started = time.perf_counter()
    try:
        text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
        headers = {**sign(secrets, webhook_id, text), "content-type": "application/json"}
        answer = client.post(
            url, content=text.encode(), headers=headers, timeout=settings.webhook_timeout
        )
    except httpx.TimeoutException:
        said = f"no answer within {settings.webhook_timeout:g} s"
        return webhook_outbox.Attempt(None, _ms(started), said)
    except outbound_http.TargetRefused as exc:
        return webhook_outbox.Attempt(None, 0, str(exc)[:500])
    except Exception as exc:  # whatever it was, an attempt that failed: never left `sending`
        return webhook_outbox.Attempt(None, _ms(started), f"{type(exc).__name__}: {exc}"[:500])
    error = None if answer.is_success else f"HTTP {answer.status_code}"
    return webhook_outbox.Attempt(answer.status_code, _ms(started), error)


def _ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
