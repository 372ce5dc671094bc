"""What a log line is about: the conversation, outbox row and task being worked on.

Set where the work starts (a turn, a delivery, a Celery task), read by ``ContextFilter`` on
every record, so a line logged anywhere below (the channel, the agent's tool) carries the
ids without each call passing them. Context variables, not thread-locals: a turn worker runs
many turns in threads and their agent runs as tasks of one event loop (``agent/loop.py``
carries these into the run).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

FIELDS = ("conversation_id", "outbox_id", "task_id")

_vars: dict[str, ContextVar[str | None]] = {
    name: ContextVar(f"dormouse_{name}", default=None) for name in FIELDS
}


@contextmanager
def bound(**ids: object) -> Iterator[None]:
    """Within the block, log lines carry these ids (None values are left as they were)."""
    tokens = [(_vars[name], _vars[name].set(str(value))) for name, value in ids.items() if value]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def current() -> dict[str, str]:
    """The ids set here now, to carry into another thread or task."""
    return {name: value for name, var in _vars.items() if (value := var.get()) is not None}


def restore(ids: Mapping[str, str]) -> None:
    """Set ``ids`` in the current context (a fresh task's: its own copy, reset with it)."""
    for name, value in ids.items():
        _vars[name].set(value)


def set_task_id(task_id: str | None) -> None:
    """Celery's task id for what runs next in this thread (None when the task ends)."""
    _vars["task_id"].set(task_id)


class ContextFilter(logging.Filter):
    """Puts the ids of the current context on each record (as attributes, None if unknown)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _vars.items():
            if not hasattr(record, name):
                setattr(record, name, var.get())
        return True
