"""The Celery app. Tasks take ids, never objects, and are idempotent."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    beat_init,
    task_postrun,
    task_prerun,
    worker_ready,
)

from conversations import log_context
from conversations.broker import READY_FILE_ENV, celery_config
from conversations.settings import Settings, get_settings
from conversations.wakeup import (
    DELIVER_QUEUE,
    DELIVER_TASK,
    PURGE_TASK,
    RECOMPUTE_TASK,
    RECONCILE_TASK,
    REDRIVE_TASK,
    SWEEP_QUEUE,
    TIMEOUT_SWEEP_TASK,
    TURN_QUEUE,
    TURN_TASK,
    WEBHOOK_TASK,
    WEBHOOKS_TASK,
    WRAPUP_TASK,
)
from workers.watchdog import WedgedChannelWatch

QUEUES = (TURN_QUEUE, DELIVER_QUEUE, SWEEP_QUEUE)
# What each kind of worker consumes (``dormouse worker --queues``).
QUEUES_OF = {
    "turns": (TURN_QUEUE,),
    "deliveries": (DELIVER_QUEUE, SWEEP_QUEUE),
    "all": QUEUES,
}


def create_celery(settings: Settings) -> Celery:
    app = Celery("dormouse", include=["workers.tasks", "scheduler.tasks"])
    app.conf.update(celery_config(settings))
    app.steps["consumer"].add(WedgedChannelWatch)
    app.conf.task_default_queue = TURN_QUEUE
    app.conf.task_routes = {
        TURN_TASK: {"queue": TURN_QUEUE},
        DELIVER_TASK: {"queue": DELIVER_QUEUE},
        RECONCILE_TASK: {"queue": DELIVER_QUEUE},
        WEBHOOK_TASK: {"queue": DELIVER_QUEUE},
        WEBHOOKS_TASK: {"queue": DELIVER_QUEUE},
        REDRIVE_TASK: {"queue": SWEEP_QUEUE},
        WRAPUP_TASK: {"queue": SWEEP_QUEUE},
        TIMEOUT_SWEEP_TASK: {"queue": SWEEP_QUEUE},
        RECOMPUTE_TASK: {"queue": SWEEP_QUEUE},
        PURGE_TASK: {"queue": SWEEP_QUEUE},
    }
    return app


def _bind_task_id(task_id: str | None = None, **_: Any) -> None:
    # Signals run in the thread (or pool child) that runs the task: its log lines say which.
    log_context.set_task_id(task_id)


def _unbind_task_id(**_: Any) -> None:
    log_context.set_task_id(None)


def _redacting(logger: logging.Logger | None = None, **_: Any) -> None:
    # With LOG_FORMAT=text Celery writes through handlers of its own: they redact too.
    for handler in logger.handlers if logger is not None else ():
        if not any(isinstance(f, log_context.RedactFilter) for f in handler.filters):
            handler.addFilter(log_context.RedactFilter())


def _ready(**_: Any) -> None:
    # `dormouse up` waits for this before its banner (READY_FILE_ENV).
    path = os.environ.get(READY_FILE_ENV)
    if path:
        Path(path).touch()


task_prerun.connect(_bind_task_id)
worker_ready.connect(_ready)
beat_init.connect(_ready)
task_postrun.connect(_unbind_task_id)
after_setup_logger.connect(_redacting)
after_setup_task_logger.connect(_redacting)


app = create_celery(get_settings())
