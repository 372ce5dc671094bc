"""A turn's view of the customer's messages that arrive while it runs (``agent/interrupts.py``).

It listens on the process's ``EventHub`` (the hints the API sends after each ingest) and reads
the database only when a hint says the conversation changed, or every ``poll`` seconds on a
broker that sends no hints. Reads run in a thread: the agent loop carries every turn of the
process. The messages a turn takes are committed as answered by it (``taken``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from agent import journal_store
from conversations import events
from conversations.db import transaction
from conversations.hints import EventHub
from conversations.transcript import MessageView
from conversations.types import utcnow
from workers import turn_statements as sql
from workers.turn_store import MAX_MESSAGES_PER_TURN

# One subscription per worker process and broker, on the agent loop (the only loop here).
_hubs: dict[str, EventHub] = {}


def hub_for(broker_url: str) -> EventHub:
    hub = _hubs.get(broker_url)
    if hub is None:
        hub = _hubs[broker_url] = EventHub(broker_url)
    return hub


class MessageArrivals:
    def __init__(
        self,
        engine: Engine,
        journal: journal_store.FencedJournal,
        *,
        interrupting: bool,
        broker_url: str,
        poll: float,
        notify: Callable[[], object],
    ) -> None:
        self.engine = engine
        self.journal = journal  # its fence: a zombie's interruption is written nowhere
        self.conversation_id = journal.conversation_id
        self.interrupting = interrupting
        self.broker_url = broker_url
        self.poll = poll
        self.notify = notify
        self.taken: dict[int, MessageView] = {}
        self._woken: asyncio.Event | None = None
        self._hinted = False

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[None]:
        hub = hub_for(self.broker_url)
        with hub.watch(self.conversation_id) as woken:
            # Set: the first look reads the database once, for a message that came before
            # this watch began (between the turn's read and now, or between two runs).
            woken.set()
            self._woken, self._hinted = woken, hub.hinted
            try:
                yield
            finally:
                self._woken = None

    async def newer(self, after: int) -> int | None:
        woken = self._woken
        if woken is not None and self._hinted:
            if not woken.is_set():
                return None
            woken.clear()  # before the read: a hint sent during it wakes the next one
        return await asyncio.to_thread(self._newest, after)

    async def wait(self, after: int) -> int:
        while True:
            found = await self.newer(after)
            if found is not None:
                return found
            if self._woken is None:
                await asyncio.sleep(self.poll)
                continue
            try:
                await asyncio.wait_for(self._woken.wait(), self.poll)
            except TimeoutError:
                self._woken.set()  # a lost hint costs one poll interval, never the message

    def missed(self) -> None:
        if self._woken is not None:
            self._woken.set()

    async def take(self, after: int, through: int) -> Sequence[MessageView]:
        found = await asyncio.to_thread(self._between, after, through)
        self.taken.update((m.id, m) for m in found)
        return found

    async def interrupted(self, after: int, through: int) -> None:
        await asyncio.to_thread(self._record_interruption, after, through)

    def _newest(self, after: int) -> int | None:
        with transaction(self.engine) as session:
            newest: int | None = session.scalar(
                sql.NEWEST_PENDING_AFTER, {"conversation_id": self.conversation_id, "after": after}
            )
            return newest

    def _between(self, after: int, through: int) -> list[MessageView]:
        with transaction(self.engine) as session:
            return self._rows(session, after, through)

    def _record_interruption(self, after: int, through: int) -> None:
        with transaction(self.engine) as session:
            self.journal.fence(session)
            ids = [m.id for m in self._rows(session, after, through)]
            events.record(
                session, self.conversation_id, events.INTERRUPTED, utcnow(), message_ids=ids
            )
        self.notify()  # after the commit: live streams read the event now

    def _rows(self, session: Session, after: int, through: int) -> list[MessageView]:
        rows = session.execute(
            sql.PENDING_THROUGH,
            {
                "conversation_id": self.conversation_id,
                "after": after,
                "through": through,
                "limit": MAX_MESSAGES_PER_TURN,
            },
        ).all()
        return [MessageView(*row) for row in rows]
