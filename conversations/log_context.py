"""What a log line is about: the conversation, outbox row and task being worked on, and
never who: no address, no message text.

Lines name ids; the text is in the database, where erasure can reach it, and logs are not.
What a line quotes from elsewhere (a provider's error, a database error) goes through
``redact``, and ``RedactFilter`` redacts every line and traceback the handler writes, a
second fence for what a library logs on its own. A regular expression finds addresses;
nothing could find free text, so text is never put in a line to begin with.

Set where the work starts (a turn, a delivery, a Celery task), read by ``ContextFilter`` on
every record, so a line logged anywhere below (the channel, the agent's tool) carries the
ids without each call passing them. Context variables, not thread-locals: a turn worker runs
many turns in threads and their agent runs as tasks of one event loop (``agent/loop.py``
carries these into the run).
"""

from __future__ import annotations

import logging
import re
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


# An email address (a Message-ID's domain part too), and a phone number as providers and we
# write them: E.164 with its "+", possibly spaced or punctuated ("+1 (555) 555-0100").
_EMAIL = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"\+\d(?:[ ().-]{0,2}\d){6,17}")


def redact(text: str) -> str:
    """``text`` with email addresses and phone numbers replaced by ``[email]`` / ``[phone]``."""
    return _PHONE.sub("[phone]", _EMAIL.sub("[email]", text))


class RedactFilter(logging.Filter):
    """Redacts addresses from each record's message and traceback (``redact``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True
