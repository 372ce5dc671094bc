"""How live streams learn of new events: a hint on the broker wakes them at once; without
one they still read every committed event at their poll; a change that rolled back writes
no event."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from api.app import create_app
from api.live import follow
from conversations.db import session_factory
from conversations.hints import EventHub, Hints
from conversations.models import Event
from conversations.settings import Settings
from conversations.wakeup import CeleryWaker
from tests.conftest import API_KEY, Backend
from tests.factories import ingest_sms


def test_a_hint_on_the_broker_wakes_the_streams_watching_that_conversation(
    migrated: Backend,
) -> None:
    watched, other = uuid.uuid4(), uuid.uuid4()

    async def scenario() -> tuple[bool, bool]:
        hub = EventHub(migrated.broker_url)
        with hub.watch(watched) as woken, hub.watch(other) as not_woken:
            # On (re)subscribing the hub wakes every stream once: hints sent before it
            # listened were missed. After that, only the conversation hinted at.
            await asyncio.wait_for(not_woken.wait(), 10)
            woken.clear()
            not_woken.clear()
            await asyncio.to_thread(Hints(migrated.broker_url).send, [watched])
            await asyncio.wait_for(woken.wait(), 10)
            return woken.is_set(), not_woken.is_set()

    assert asyncio.run(scenario()) == (True, False)


def test_without_hints_a_stream_still_reads_every_committed_event(db: Engine) -> None:
    conversation_id = ingest_sms(db, "first").conversation_id
    assert conversation_id is not None

    async def scenario() -> list[str]:
        hub = EventHub("amqp://no-hints-here")  # not Redis: no hints, polling only
        seen: list[str] = []
        async for event in follow(db, hub, conversation_id, 0, poll=0.05):
            if event is None:
                continue
            seen.append(event.message.text if event.message else event.type)
            if seen == ["conversation.started", "first"]:
                await asyncio.to_thread(ingest_sms, db, "second")
            if len(seen) == 3:
                return seen
        raise AssertionError("the stream ended")

    assert asyncio.run(asyncio.wait_for(scenario(), 20)) == [
        "conversation.started",
        "first",
        "second",
    ]


def test_a_refused_change_writes_no_event(
    db: Engine, settings: Settings, waker: CeleryWaker
) -> None:
    conversation_id = ingest_sms(db, "hello").conversation_id

    def count() -> int:
        with session_factory(db)() as session:
            return session.scalar(select(func.count()).select_from(Event)) or 0

    with TestClient(create_app(settings, db, waker), raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {API_KEY}"
        assert client.post(f"/v1/conversations/{conversation_id}/finish").status_code == 200
        before = count()
        again = client.post(f"/v1/conversations/{conversation_id}/finish")
        assert again.status_code == 409 and count() == before
        refused = client.post(f"/v1/conversations/{conversation_id}/handback")
        assert refused.status_code == 409 and count() == before


@pytest.mark.parametrize("cursor", ["-1", "1e3", "abc"])
def test_a_cursor_that_is_not_one_is_a_422(
    db: Engine, settings: Settings, waker: CeleryWaker, cursor: str
) -> None:
    conversation_id = ingest_sms(db, "hello").conversation_id
    with TestClient(create_app(settings, db, waker), raise_server_exceptions=False) as client:
        answer = client.get(
            f"/v1/conversations/{conversation_id}/events",
            params={"after": cursor},
            headers={"Authorization": f"Bearer {API_KEY}"},
        )
    assert answer.status_code == 422 and "after:" in answer.json()["detail"]
