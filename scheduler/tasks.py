"""The periodic tasks beat sends."""

from __future__ import annotations

import logging
from datetime import timedelta

from conversations.db import get_engine, session_factory
from conversations.settings import get_settings
from conversations.types import utcnow
from conversations.wakeup import RECONCILE_TASK, REDRIVE_TASK
from scheduler.sweeps import find_redrive_work
from workers.app import app
from workers.tasks import waker

log = logging.getLogger(__name__)

REDRIVE_BATCH = 500


@app.task(name=REDRIVE_TASK)
def redrive() -> dict[str, int]:
    settings = get_settings()
    with session_factory(get_engine())() as session:
        work = find_redrive_work(
            session,
            now=utcnow(),
            grace=timedelta(seconds=settings.redrive_interval),
            reconcile_after=timedelta(seconds=settings.delivery_reconcile_after),
            limit=REDRIVE_BATCH,
        )
    w = waker()
    for conversation_id in work.turns:
        w.turn(conversation_id)
    for outbox_id in work.deliveries:
        w.deliver(outbox_id)
    for outbox_id in work.reconciles:
        app.send_task(RECONCILE_TASK, args=[outbox_id])
    counts = {
        "turns": len(work.turns),
        "deliveries": len(work.deliveries),
        "reconciles": len(work.reconciles),
    }
    if any(counts.values()):
        log.info("redrive: %s", counts)
    return counts
