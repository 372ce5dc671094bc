"""How every ``dormouse`` process logs: its level, and readable text or one JSON object a line.

``LOG_FORMAT=json`` is for log shippers (Loki, CloudWatch, Elasticsearch): one object per
line with ``timestamp``, ``level``, ``process``, ``pid``, ``logger``, ``message`` and, where
known, ``conversation_id``, ``outbox_id`` and ``task_id`` (``conversations/log_context.py``),
plus ``exception`` with the traceback. A formatter of a few lines rather than a package
(python-json-logger would do): the field names are a contract the README documents, and
they are exactly these.
"""

from __future__ import annotations

import copy
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from conversations.log_context import FIELDS, ContextFilter, RedactFilter

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_process = "dormouse"
_format = "text"


def effective_log_level() -> str:
    """The root logger's level by name, as Celery's ``--loglevel`` and LOG_LEVEL take it.

    Celery configures its own logging from ``--loglevel``, so the level set by
    ``--log-level``/LOG_LEVEL must be passed on; NOTSET (not a choice Celery accepts) means
    everything, which is DEBUG.
    """
    return logging.getLevelName(max(logging.DEBUG, logging.getLogger().getEffectiveLevel()))


def set_process_name(name: str) -> None:
    """What the ``process`` field says: api, worker-turns, worker-deliveries, beat …"""
    global _process
    _process = name


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "process": _process,
            "pid": record.process,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.stack_info:
            line["stack"] = record.stack_info
        # ensure_ascii: a line stays one line and 7-bit whatever a customer wrote.
        return json.dumps(line, ensure_ascii=True, default=str)


def log_format() -> str:
    """The format ``configure_logging`` set: ``text`` or ``json``."""
    return _format


def configure_logging(level: str, log_format: str) -> None:
    """The root handler every process logs through (Celery's own is kept out in JSON mode)."""
    global _format
    _format = log_format
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactFilter())  # no address in any line, whoever logged it
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Python warnings (Celery's SecurityWarning as root) as log records: one JSON line each.
    logging.captureWarnings(log_format == "json")


def keep_celery_off_logging() -> None:
    """Celery replaces the root handler with its own text format unless a ``setup_logging``
    receiver exists; in JSON mode ours must stay, so there is one (which does nothing)."""
    from celery.signals import setup_logging

    setup_logging.connect(_ours_already, weak=False)


def _ours_already(**_: object) -> None:
    return None


def uvicorn_log_config() -> dict[str, Any] | None:
    """What ``uvicorn.run`` is given: in JSON mode nothing (its lines go through our root
    handler); in text mode its own readable config, with the redacting filter on its
    handlers (they write tracebacks of failed requests)."""
    if _format == "json":
        return None
    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact"] = {"()": RedactFilter}
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).append("redact")
    return config
