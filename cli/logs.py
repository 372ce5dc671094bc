"""The log level the ``dormouse`` command was given, for the processes it starts."""

from __future__ import annotations

import logging


def effective_log_level() -> str:
    """The root logger's level by name, as Celery's ``--loglevel`` and LOG_LEVEL take it.

    Celery configures its own logging from ``--loglevel``, so the level set by
    ``--log-level``/LOG_LEVEL must be passed on; NOTSET (not a choice Celery accepts) means
    everything, which is DEBUG.
    """
    return logging.getLevelName(max(logging.DEBUG, logging.getLogger().getEffectiveLevel()))
