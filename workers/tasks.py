"""Task entry points: thin wrappers that build the collaborators and call the logic."""

from __future__ import annotations

import threading
import uuid
from functools import lru_cache

from agent.catalog import AgentCatalog, load_agents
from conversations.db import get_engine
from conversations.settings import get_settings
from conversations.timeout_store import recompute_all
from conversations.timeouts import Scope
from conversations.types import utcnow
from conversations.wakeup import (
    DELIVER_TASK,
    RECOMPUTE_TASK,
    RECONCILE_TASK,
    TURN_TASK,
    WEBHOOK_TASK,
    WEBHOOKS_TASK,
    WRAPUP_TASK,
    CeleryWaker,
)
from workers import deliver as delivery
from workers import webhooks as event_webhooks
from workers.app import app
from workers.deliver import deliver_time_limit
from workers.turn import run_turn
from workers.wrapup import wrap_up as run_wrap_up

# Countdown hints for retries stay far below the visibility timeout; the redrive sweep, not
# this hint, is what guarantees the retry happens.
MAX_HINT_SECONDS = 300


# A turn worker's threads all start at once: built under a lock, so once per process.
_building = threading.Lock()


def agents() -> AgentCatalog:
    with _building:
        return _agents()


def waker() -> CeleryWaker:
    with _building:
        return _waker()


@lru_cache(maxsize=1)
def _agents() -> AgentCatalog:
    return load_agents(get_settings())


@lru_cache(maxsize=1)
def _waker() -> CeleryWaker:
    return CeleryWaker(app)


@app.task(name=TURN_TASK)
def turn(conversation_id: str) -> int:
    return run_turn(
        uuid.UUID(conversation_id),
        engine=get_engine(),
        agents=agents(),
        settings=get_settings(),
        waker=waker(),
    )


@app.task(name=DELIVER_TASK, time_limit=deliver_time_limit(get_settings()))
def deliver(outbox_id: int) -> str:
    settings = get_settings()
    status = delivery.deliver(outbox_id, engine=get_engine(), settings=settings)
    if status == "sent":  # its message.sent event may be owed to webhook endpoints
        waker().webhooks(None)
    if status == "pending":
        waker().deliver(outbox_id, delay=min(settings.delivery_backoff_base, MAX_HINT_SECONDS))
    elif status == "sending":
        later = min(delivery.reconcile_after(settings) + 1, MAX_HINT_SECONDS)
        waker().reconcile(outbox_id, delay=later)
    return status


@app.task(name=RECONCILE_TASK, time_limit=deliver_time_limit(get_settings()))
def reconcile(outbox_id: int) -> str:
    return delivery.reconcile(outbox_id, engine=get_engine(), settings=get_settings())


@app.task(name=WEBHOOK_TASK, time_limit=event_webhooks.time_limit(get_settings()))
def webhook(delivery_id: int) -> int:
    outcome = event_webhooks.send(delivery_id, engine=get_engine(), settings=get_settings())
    return _follow_up(outcome)


@app.task(name=WEBHOOKS_TASK, time_limit=event_webhooks.time_limit(get_settings()))
def webhooks(conversation_ids: list[str | None] | None) -> int:
    keys = (
        None
        if conversation_ids is None
        else [uuid.UUID(c) if c is not None else None for c in conversation_ids]
    )
    outcome = event_webhooks.send_due(keys, engine=get_engine(), settings=get_settings())
    return _follow_up(outcome)


def _follow_up(outcome: event_webhooks.Outcome) -> int:
    # Retries are woken by a countdown hint when due soon; later ones (and any hint lost) are
    # found by the redrive sweep once due.
    now = utcnow()
    for delivery_id, at in outcome.retries:
        delay = (at - now).total_seconds() + 0.5
        if delay <= MAX_HINT_SECONDS:
            waker().webhook(delivery_id, delay=max(delay, 0))
    if outcome.more:
        waker().webhooks(None)
    return outcome.delivered


@app.task(name=WRAPUP_TASK)
def wrap_up(conversation_id: str) -> bool:
    cid = uuid.UUID(conversation_id)
    done = run_wrap_up(cid, engine=get_engine(), agents=agents())
    if done:  # its conversation.finished may now be owed to webhook endpoints
        waker().webhooks([cid])
    return done


@app.task(name=RECOMPUTE_TASK)
def recompute_timeouts(service: str, channel: str) -> int:
    return recompute_all(
        get_engine(), Scope(service, channel), defaults=get_settings().default_policies()
    )
