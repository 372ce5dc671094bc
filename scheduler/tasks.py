"""The periodic tasks beat sends (``scheduler/schedule.py`` says when)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete

from conversations.db import get_engine, rowcount, transaction
from conversations.metrics import REDRIVEN, SWEEP_CONVERSATIONS, SWEEP_SECONDS
from conversations.models import IdempotencyKey
from conversations.nonces import purge_before
from conversations.settings import Settings, get_settings
from conversations.timeouts import Policy
from conversations.types import utcnow
from conversations.wakeup import (
    PURGE_TASK,
    REDRIVE_TASK,
    TIMEOUT_SWEEP_TASK,
    Produced,
    publish,
)
from memory.store import purge_expired
from scheduler.schedule import beat_schedule
from scheduler.sweeps import Window, redrive_once
from scheduler.timeouts import close_expired, send_due_nudges
from workers.app import app
from workers.deliver import reconcile_after
from workers.tasks import waker
from workers.webhooks import stale_after

log = logging.getLogger(__name__)

# Beat imports this module (the app's include) before it reads its schedule.
app.conf.beat_schedule = beat_schedule(get_settings())

REDRIVE_BATCH = 500
SWEEP_BATCH = 500
# One sweep run handles at most this many batches; the next run (seconds later) continues.
SWEEP_MAX_BATCHES = 200
PURGE_BATCH = 500
PURGE_MAX_BATCHES = 200


@contextmanager
def _timed(sweep: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        SWEEP_SECONDS.labels(sweep).observe(time.perf_counter() - started)


@app.task(name=REDRIVE_TASK)
def redrive() -> dict[str, int]:
    with _timed("redrive"):
        counts = _redrive()
    for kind, found in counts.items():
        if found:
            REDRIVEN.labels(kind).inc(found)
    return counts


def _redrive() -> dict[str, int]:
    settings = get_settings()
    window = Window(
        now=utcnow(),
        grace=timedelta(seconds=settings.redrive_interval),
        rewake_after=timedelta(seconds=settings.redrive_rewake_after),
    )
    return redrive_once(
        get_engine(),
        waker(),
        window,
        reconcile_after=timedelta(seconds=reconcile_after(settings)),
        limit=REDRIVE_BATCH,
        webhook_stale_after=stale_after(settings),
    )


@app.task(name=TIMEOUT_SWEEP_TASK)
def sweep_timeouts() -> dict[str, int]:
    with _timed("timeouts"):
        return sweep_once(get_engine(), defaults=get_settings().default_policies())


def sweep_once(
    engine: Engine, *, defaults: Mapping[str, Policy], now: datetime | None = None
) -> dict[str, int]:
    """Nudge and close everything due, batch by batch; wake deliveries and wrap-ups."""
    now = now or utcnow()
    w = waker()
    nudged = closed = 0
    for step in (send_due_nudges, close_expired):
        for _ in range(SWEEP_MAX_BATCHES):
            with transaction(engine) as session:
                result = step(session, now=now, limit=SWEEP_BATCH, defaults=defaults)
            closing = step is close_expired
            produced = Produced.of(
                deliveries=result.outbox_ids,
                wrap_ups=result.closed if closing else (),
                changed=result.closed,
            )
            publish(w, produced)
            if closing:
                closed += len(result.closed)
            else:
                nudged += len(result.closed)
            if not result.closed:
                break
    SWEEP_CONVERSATIONS.labels("nudged").inc(nudged)
    SWEEP_CONVERSATIONS.labels("closed").inc(closed)
    if nudged or closed:
        log.info("timeouts: nudged %d, closed %d", nudged, closed)
    return {"nudged": nudged, "closed": closed}


@app.task(name=PURGE_TASK)
def purge_memory() -> dict[str, int]:
    """Delete, batch by batch, what fell out of the retention window."""
    with _timed("purge"):
        return purge_once(get_engine(), get_settings())


def purge_once(
    engine: Engine, settings: Settings, *, now: datetime | None = None
) -> dict[str, int]:
    """Memory and finished conversations past MEMORY_RETENTION, webhook tokens no longer
    accepted, and Idempotency-Key answers past IDEMPOTENCY_KEY_TTL (they copy customers'
    addresses and text)."""
    now = now or utcnow()
    totals = {"memory_entries": 0, "conversations": 0}
    for _ in range(PURGE_MAX_BATCHES):
        with transaction(engine) as session:
            purged = purge_expired(
                session, now=now, retention=settings.memory_retention_delta, batch=PURGE_BATCH
            )
        totals["memory_entries"] += purged.memory_entries
        totals["conversations"] += purged.conversations
        if not (purged.memory_entries or purged.conversations):
            break
    with transaction(engine) as session:
        cutoff = now - timedelta(seconds=2 * settings.mailgun_max_age)
        totals["webhook_nonces"] = purge_before(session, cutoff)
    with transaction(engine) as session:
        expired = session.execute(
            delete(IdempotencyKey)
            .where(IdempotencyKey.created_at < now - settings.idempotency_key_ttl_delta)
            .execution_options(synchronize_session=False)
        )
        totals["idempotency_keys"] = rowcount(expired)
    if any(totals.values()):
        log.info("purge: %s", totals)
    return totals
