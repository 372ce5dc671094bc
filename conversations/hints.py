"""Hints that a conversation has new events, so live streams read them now, not at their
next poll. A hint carries only an id: the database stays the truth, and a lost hint delays
an event by one poll interval, never loses it.

Sent on the broker's Redis (the embedded broker speaks it too) with PUBLISH, after commit.
A broker that is not Redis sends none: streams then poll.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Sequence

import redis

log = logging.getLogger(__name__)

CHANNEL = "dormouse:events"


def redis_url(broker_url: str) -> str | None:
    """The broker URL as redis-py takes it, or None for a broker that is not Redis."""
    if broker_url.startswith("redis+socket://"):
        return broker_url.replace("redis+socket://", "unix://", 1)
    if broker_url.startswith(("redis://", "rediss://", "unix://")):
        return broker_url
    return None


class Hints:
    def __init__(self, broker_url: str) -> None:
        self._url = redis_url(broker_url)
        self._client: redis.Redis | None = None
        self._lock = threading.Lock()

    def send(self, conversation_ids: Sequence[uuid.UUID]) -> bool:
        """Never raises: a hint that cannot be sent is only a later read."""
        if self._url is None or not conversation_ids:
            return False
        try:
            client = self._connect()
            with client.pipeline(transaction=False) as pipe:
                for conversation_id in conversation_ids:
                    pipe.publish(CHANNEL, str(conversation_id))
                pipe.execute()
        except (redis.RedisError, OSError) as exc:
            log.debug("event hint not sent (streams will poll): %s", exc)
            return False
        return True

    def _connect(self) -> redis.Redis:
        with self._lock:
            if self._client is None:
                assert self._url is not None
                self._client = redis.Redis.from_url(
                    self._url, socket_connect_timeout=0.5, socket_timeout=0.5
                )
            return self._client
