"""When beat sends each periodic task: the one place the schedule is written.

A backlog of sweeps is useless (the next run does the same work), so each expires after
its own interval.
"""

from __future__ import annotations

from typing import Any

from conversations.settings import Settings
from conversations.wakeup import PURGE_TASK, REDRIVE_TASK, SWEEP_QUEUE, TIMEOUT_SWEEP_TASK


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    every = {
        "redrive": (REDRIVE_TASK, settings.redrive_interval),
        "timeouts": (TIMEOUT_SWEEP_TASK, settings.timeout_sweep_interval),
        "purge": (PURGE_TASK, settings.purge_interval),
    }
    return {
        name: {
            "task": task,
            "schedule": interval,
            "options": {"expires": max(1.0, interval), "queue": SWEEP_QUEUE},
        }
        for name, (task, interval) in every.items()
    }
