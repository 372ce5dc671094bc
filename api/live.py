"""Live streams of a conversation's events: NDJSON lines (or SSE), resumable by cursor.

The database is the truth: a stream reads events committed after its cursor, then waits for
a hint (``conversations/hints.py``) or its poll interval, whichever comes first, and reads
again. Waiting holds neither a threadpool thread nor a database connection, so one API
process keeps thousands of idle streams open; a lost hint costs one poll interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from conversations import events
from conversations.db import session_factory
from conversations.events import StoredEvent
from conversations.hints import EventHub
from conversations.types import iso

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15.0  # an empty line: proxies keep the connection, clients see it alive
NDJSON = "application/x-ndjson"
SSE = "text/event-stream"

# Stored event type → the type a live client reads.
LIVE_TYPES = {
    events.STARTED: "conversation-created",
    events.RECEIVED: "new-message",
    events.CREATED: "new-message",
    events.TURN_COMPLETED: "interaction-complete",
    events.INTERRUPTED: "interrupted",
    events.HANDOFF: "handoff",
    events.HANDBACK: "handback",
    events.ENDED: "end-session",
}


def read_after(engine: Engine, conversation_id: uuid.UUID, after: int) -> list[StoredEvent]:
    with session_factory(engine)() as session:
        # The live API's own catalogue: events added for webhooks (message.sent, …) are not
        # lines its clients were promised.
        return events.events_after(session, conversation_id, after, types=LIVE_TYPES)


async def follow(
    engine: Engine,
    hub: EventHub,
    conversation_id: uuid.UUID,
    after: int,
    *,
    poll: float,
    stop: Callable[[StoredEvent], bool] = lambda e: False,
    deadline: float | None = None,
) -> AsyncIterator[StoredEvent | None]:
    """The conversation's events past ``after`` as they commit, ``None`` for a heartbeat;
    ends after an event ``stop`` accepts, or at ``deadline`` (loop time)."""
    loop = asyncio.get_running_loop()
    with hub.watch(conversation_id) as woken:
        quiet_since = next_read = loop.time()
        while True:
            now = loop.time()
            if woken.is_set() or now >= next_read:
                woken.clear()
                found = await run_in_threadpool(read_after, engine, conversation_id, after)
                for event in found:
                    yield event
                    after = event.cursor
                    if stop(event):
                        return
                now = loop.time()
                if found:
                    quiet_since = now
                # Jittered: streams opened together must not all read the database together.
                next_read = now + poll * random.uniform(0.8, 1.2)
            if deadline is not None and now >= deadline:
                return
            if now - quiet_since >= HEARTBEAT_SECONDS:
                yield None
                quiet_since = now
            wait = min(next_read, quiet_since + HEARTBEAT_SECONDS) - now
            if deadline is not None:
                wait = min(wait, deadline - now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), max(wait, 0.0))


def shown(event: StoredEvent, *, type: str | None = None) -> dict[str, Any]:
    """An event as a live client reads it: ``type``, ``cursor``, ``conversation_id``, and
    ``message`` for message events; the rest of what was stored (reason, status)."""
    line: dict[str, Any] = {
        "type": type or LIVE_TYPES.get(event.type, event.type),
        "cursor": str(event.cursor),
        "conversation_id": str(event.conversation_id),
        "at": iso(event.created_at),
    }
    if event.message is not None:
        m = event.message
        line["message"] = {
            "id": m.id,
            "direction": m.direction,
            "role": m.role,
            "text": m.text,
            "created_at": iso(m.created_at),
        }
    line.update({k: v for k, v in event.data.items() if k not in ("message_id", "handled")})
    return line


def ndjson(line: dict[str, Any] | None) -> bytes:
    return b"\n" if line is None else json.dumps(line, separators=(",", ":")).encode() + b"\n"


def sse(line: dict[str, Any] | None) -> bytes:
    if line is None:
        return b": heartbeat\n\n"
    data = json.dumps(line, separators=(",", ":"))
    return f"id: {line.get('cursor', '')}\nevent: {line['type']}\ndata: {data}\n\n".encode()
