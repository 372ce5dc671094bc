"""Turns on the real database: lease and fencing, coalescing, the lost wake-up, poison."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select

from agent.base import TurnContext
from agent.catalog import AgentCatalog
from agent.offline import OfflineAgent
from agent.tools import Toolbox
from conversations import lifecycle
from conversations.db import session_factory, transaction
from conversations.errors import LeaseLost
from conversations.models import Conversation, Message, OutboxRow
from conversations.settings import Settings
from conversations.states import FinishReason
from conversations.types import utcnow
from conversations.wakeup import DELIVER_QUEUE, DELIVER_TASK, TURN_QUEUE, TURN_TASK, CeleryWaker
from tests.conftest import queued
from tests.factories import DEFAULTS, ingest_sms
from workers import turn_store as turns
from workers.turn import run_turn


def conversation(engine: Engine, conversation_id: uuid.UUID) -> Conversation:
    with session_factory(engine)() as s:
        return s.get_one(Conversation, conversation_id)


def messages(engine: Engine, conversation_id: uuid.UUID) -> list[Message]:
    with session_factory(engine)() as s:
        return list(
            s.scalars(
                select(Message)
                .where(Message.conversation_id == conversation_id)
                .order_by(Message.id)
            )
        )


def run(engine: Engine, cid: uuid.UUID, settings: Settings, waker: CeleryWaker, agent=None) -> int:
    agents = AgentCatalog(default=agent)
    return run_turn(cid, engine=engine, agents=agents, settings=settings, waker=waker)


def test_a_turn_answers_then_suspends_and_the_next_one_rehydrates(
    db: Engine, settings: Settings, waker: CeleryWaker
) -> None:
    cid = ingest_sms(db, "hello").conversation_id
    assert run(db, cid, settings, waker) == 1
    cid2 = ingest_sms(db, "how are you").conversation_id
    assert cid2 == cid
    assert run(db, cid, settings, waker) == 1

    conv = conversation(db, cid)
    assert (conv.status, conv.turn_count, conv.lease_token) == ("suspended", 2, None)
    replies = [m.body for m in messages(db, cid) if m.direction == "outbound"]
    assert replies[0].startswith("Hi! You're talking to the default assistant.")
    assert '"hello"' in replies[0] and "1 message from you" in replies[0]
    assert '"how are you"' in replies[1] and "2 messages from you" in replies[1]
    assert "Hi!" not in replies[1]


def test_messages_waiting_together_are_coalesced_into_one_turn(
    db: Engine, settings: Settings, waker: CeleryWaker
) -> None:
    for text in ("one", "two", "three"):
        cid = ingest_sms(db, text).conversation_id
    assert run(db, cid, settings, waker) == 1
    inbound = [m for m in messages(db, cid) if m.direction == "inbound"]
    assert [(m.inbound_state, m.turn) for m in inbound] == [("done", 1)] * 3
    [reply] = [m.body for m in messages(db, cid) if m.direction == "outbound"]
    assert '"one" / "two" / "three"' in reply


def test_a_zombie_whose_lease_expired_cannot_commit(db: Engine, settings: Settings) -> None:
    cid = ingest_sms(db, "hello").conversation_id
    now = utcnow()
    zombie, successor = uuid.uuid4(), uuid.uuid4()
    with transaction(db) as s:
        assert turns.claim(s, cid, token=zombie, now=now, lease_seconds=5) == 1
    with transaction(db) as s:  # the lease is live: nobody else may claim
        assert turns.claim(s, cid, token=successor, now=now, lease_seconds=5) is None
    with session_factory(db)() as s:
        snapshot = turns.rehydrate(s, cid, window=10)

    later = now + timedelta(seconds=6)
    with transaction(db) as s:
        assert turns.claim(s, cid, token=successor, now=later, lease_seconds=5) == 2
    with pytest.raises(LeaseLost), transaction(db) as s:
        turns.commit_turn(
            s,
            snapshot,
            turns.TurnOutcome(["from the zombie"]),
            token=zombie,
            now=later,
            defaults=DEFAULTS,
        )
    with transaction(db) as s:
        turns.commit_turn(
            s,
            snapshot,
            turns.TurnOutcome(["from the successor"]),
            token=successor,
            now=later,
            defaults=DEFAULTS,
        )

    bodies = [m.body for m in messages(db, cid) if m.direction == "outbound"]
    assert bodies == ["from the successor"]
    with session_factory(db)() as s:
        assert [r.body for r in s.scalars(select(OutboxRow))] == ["from the successor"]


class ArrivesDuringTurn:
    """An agent during whose turn the customer sends another message."""

    def __init__(self, engine: Engine, text: str, inner=None) -> None:
        self.engine, self.text, self.inner = engine, text, inner or OfflineAgent()
        self.calls = 0

    def run_turn(self, context: TurnContext, tools: Toolbox) -> list[str]:
        self.calls += 1
        if self.calls == 1:
            late = ingest_sms(self.engine, self.text)
            assert late.conversation_id == context.deps.conversation_id and late.needs_turn
        return self.inner.run_turn(context, tools)


def test_a_message_arriving_during_a_turn_is_answered_by_the_next_turn(
    db: Engine, settings: Settings, waker: CeleryWaker
) -> None:
    cid = ingest_sms(db, "first").conversation_id
    # The late message's own wake-up would find the conversation running and do nothing;
    # the re-check after release queues the wake-up that answers it.
    assert run(db, cid, settings, waker, ArrivesDuringTurn(db, "second")) == 1
    assert queued(settings.effective_broker_url, TURN_QUEUE) == [(TURN_TASK, [str(cid)])]
    assert run(db, cid, settings, waker) == 1
    inbound = [
        (m.body, m.inbound_state, m.turn) for m in messages(db, cid) if m.direction == "inbound"
    ]
    assert inbound == [("first", "done", 1), ("second", "done", 2)]


def test_goodbye_finishes_and_a_late_message_opens_a_new_conversation(
    db: Engine, settings: Settings, waker: CeleryWaker
) -> None:
    cid = ingest_sms(db, "ok bye").conversation_id
    run(db, cid, settings, waker, ArrivesDuringTurn(db, "wait, one more thing"))

    finished = conversation(db, cid)
    assert (finished.status, finished.finish_reason) == ("finished", "agent")
    assert finished.finished_at is not None
    with session_factory(db)() as s:
        reopened = s.scalars(select(Conversation).where(Conversation.id != cid)).one()
    assert reopened.status == "suspended"
    assert [m.body for m in messages(db, reopened.id)] == ["wait, one more thing"]
    assert (TURN_TASK, [str(reopened.id)]) in queued(settings.effective_broker_url, TURN_QUEUE)


def test_asking_for_a_human_hands_off_and_the_agent_stays_silent(
    db: Engine, settings: Settings, waker: CeleryWaker
) -> None:
    cid = ingest_sms(db, "I want a human please").conversation_id
    run(db, cid, settings, waker)
    assert conversation(db, cid).status == "handoff"

    later = ingest_sms(db, "hello? anyone?")
    assert later.conversation_id == cid and not later.needs_turn
    assert run(db, cid, settings, waker) == 0
    held = messages(db, cid)[-1]
    assert (held.body, held.inbound_state) == ("hello? anyone?", "held")


def test_a_message_arriving_during_a_turn_that_hands_off_is_held_for_the_human(
    db: Engine, settings: Settings, waker: CeleryWaker
) -> None:
    cid = ingest_sms(db, "get me a human").conversation_id
    run(db, cid, settings, waker, ArrivesDuringTurn(db, "are you there?"))
    assert conversation(db, cid).status == "handoff"
    inbound = [(m.body, m.inbound_state) for m in messages(db, cid) if m.direction == "inbound"]
    assert inbound == [("get me a human", "done"), ("are you there?", "held")]
    with transaction(db) as s:  # an operator closing it later does not wake the agent on it
        finished = lifecycle.finish(s, cid, reason=FinishReason.OPERATOR, now=utcnow())
    assert finished.reopened_conversation_id is None


class Broken:
    def run_turn(self, context: TurnContext, tools: Toolbox) -> list[str]:
        raise RuntimeError("model exploded")


def test_a_failing_turn_is_released_for_retry_then_quarantined(
    db: Engine, settings: Settings, waker: CeleryWaker
) -> None:
    cid = ingest_sms(db, "poison").conversation_id
    for attempt in range(1, settings.max_turn_attempts + 1):
        assert run(db, cid, settings, waker, Broken()) == 0
        conv = conversation(db, cid)
        assert (conv.status, conv.claim_attempts) == ("suspended", attempt)
        assert "model exploded" in (conv.last_error or "")

    run(db, cid, settings, waker, Broken())
    conv = conversation(db, cid)
    assert conv.status == "handoff" and "quarantined" in (conv.handoff_reason or "")
    inbound = [m.inbound_state for m in messages(db, cid) if m.direction == "inbound"]
    assert inbound == ["quarantined"]
    # The customer is told once that a person will answer; another wake-up tells nothing.
    assert run(db, cid, settings, waker, Broken()) == 0
    told = [m.body for m in messages(db, cid) if m.direction == "outbound"]
    assert told == [settings.quarantine_message]
    assert (DELIVER_TASK, [told_outbox_id(db, cid)]) in queued(
        settings.effective_broker_url, DELIVER_QUEUE
    )


def told_outbox_id(engine: Engine, cid: uuid.UUID) -> int:
    with session_factory(engine)() as s:
        return s.scalars(select(OutboxRow.id).where(OutboxRow.conversation_id == cid)).one()
