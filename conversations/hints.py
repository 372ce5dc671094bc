"""Hints that a conversation has new events, so live streams read them now, not at their
next poll. A hint carries only an id: the database stays the truth, and a lost hint delays
an event by one poll interval, never loses it.

Sent on the broker's Redis (the embedded broker speaks it too) with PUBLISH, after commit,
and received by one ``EventHub`` per process: the API's live streams wait on it, and so does a
turn that a customer's next message may interrupt (``workers/arrivals.py``). A broker that is
not Redis sends none: both then poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from collections.abc import Iterator, Sequence

import redis
import redis.asyncio as aioredis

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


class EventHub:
    """One subscription to the hints per process, fanned out to the streams waiting on each
    conversation. Started on first use; reconnects after a broker outage (streams poll
    meanwhile)."""

    def __init__(self, broker_url: str) -> None:
        self._url = redis_url(broker_url)
        self._waiting: dict[str, set[asyncio.Event]] = {}
        self._task: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def watch(self, conversation_id: uuid.UUID) -> Iterator[asyncio.Event]:
        """An event set when ``conversation_id`` may have new events. Watch before reading,
        so a hint that arrives during the read is not missed."""
        self._start()
        woken = asyncio.Event()
        key = str(conversation_id)
        self._waiting.setdefault(key, set()).add(woken)
        try:
            yield woken
        finally:
            waiting = self._waiting.get(key)
            if waiting is not None:
                waiting.discard(woken)
                if not waiting:
                    del self._waiting[key]

    async def close(self) -> None:
        """Stop listening (the app is shutting down): the subscription ends cleanly."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def hinted(self) -> bool:
        """Whether hints come at all (a Redis broker): without them, waiters poll."""
        return self._url is not None

    @property
    def streams(self) -> int:
        return sum(len(w) for w in self._waiting.values())

    def _start(self) -> None:
        if self._url is not None and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._listen(self._url))

    async def _listen(self, url: str) -> None:
        while True:
            client = aioredis.Redis.from_url(url, socket_connect_timeout=2)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    # Hints sent before this subscription (at start, or during an outage) were
                    # missed: every stream reads once now instead of at its next poll.
                    self._wake_all()
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._wake(message["data"].decode())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker went away: streams poll until it is back
                log.info("event hints unavailable, streams poll: %s", exc)
            finally:
                await client.aclose()
            await asyncio.sleep(1.0)

    def _wake_all(self) -> None:
        for waiting in self._waiting.values():
            for woken in waiting:
                woken.set()

    def _wake(self, conversation_id: str) -> None:
        for woken in self._waiting.get(conversation_id, ()):
            woken.set()
