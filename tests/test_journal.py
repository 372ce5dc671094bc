"""The step journal on the real database, with the local OpenAI-compatible model server: a
billing agent that charges a card, then sends a receipt, then answers. Its turn is
interrupted at each step boundary and retried; the retry replays what was done."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from click.testing import Result
from fastapi.testclient import TestClient
from openai import AsyncOpenAI
from prometheus_client import REGISTRY
from pydantic_ai import Agent, RunContext
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider
from sqlalchemy import Engine, select

import dormouse
from agent.catalog import AgentCatalog
from conversations.db import session_factory, transaction
from conversations.models import Conversation, Event, MemoryEntry, Message, TurnStep
from conversations.settings import Settings
from conversations.types import utcnow
from conversations.wakeup import CeleryWaker
from tests.factories import ingest_sms
from tests.fakes.model_api import FakeModel
from tests.test_agents import replies, turn
from workers import turn_store
from workers.wrapup import wrap_up

PLAN = [("charge_card", {"amount_cents": 500}), ("send_receipt", {"email": "ann@example.com"})]
REPLY = "ack: receipt sent to ann@example.com"


class WorkerDied(BaseException):
    """Stands for kill -9 of the worker in the middle of a tool: nothing after it runs, and
    the lease stays taken until it expires (not an ``Exception``: no handler catches it)."""


@dataclass
class Billing:
    """The business's tools, counting what they really did, and dying once where told."""

    die_in: str | None = None
    charged: list[str] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    before_return: Callable[[RunContext[dormouse.TurnDeps]], None] | None = None

    def agent(self, fake: FakeModel, instructions: str = "You bill customers.") -> Agent[Any, str]:
        billing = self

        @dormouse.tool
        async def charge_card(ctx: RunContext[dormouse.TurnDeps], amount_cents: int) -> str:
            """Charge the customer's card."""
            billing._maybe_die("charge_card")
            billing.charged.append(ctx.deps.idempotency_key)
            if billing.before_return is not None:
                billing.before_return(ctx)
            return f"charged {amount_cents}"

        @dormouse.tool
        async def send_receipt(ctx: RunContext[dormouse.TurnDeps], email: str) -> str:
            """Email the customer a receipt."""
            billing._maybe_die("send_receipt")
            billing.sent.append(ctx.deps.idempotency_key)
            return f"receipt sent to {email}"

        client = AsyncOpenAI(base_url=fake.url, api_key="unused", max_retries=0)
        model = OpenAIChatModel("fake-llm", provider=OpenAIProvider(openai_client=client))
        return Agent(
            model,
            deps_type=dormouse.TurnDeps,
            instructions=instructions,
            tools=[charge_card, send_receipt],
        )

    def _maybe_die(self, tool: str) -> None:
        if self.die_in == tool:
            self.die_in = None
            raise WorkerDied(tool)


@pytest.fixture
def billing_model(fake_model: FakeModel) -> FakeModel:
    fake_model.tool_plan = list(PLAN)
    return fake_model


def after_the_lease(settings: Settings) -> Callable[[], datetime]:
    """The clock of a worker that comes along once the dead worker's lease has expired."""
    return lambda: utcnow() + timedelta(seconds=settings.lease_seconds + 1)


def journal(db: Engine, cid: uuid.UUID) -> list[tuple[int, int, str, str]]:
    with session_factory(db)() as s:
        rows = s.execute(
            select(TurnStep.step, TurnStep.call, TurnStep.kind, TurnStep.name)
            .where(TurnStep.conversation_id == cid)
            .order_by(TurnStep.step, TurnStep.call)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


def replayed_count(kind: str) -> float:
    return REGISTRY.get_sample_value("dormouse_journal_replayed_total", {"kind": kind}) or 0.0


STEPS = [
    (0, 0, "model"),
    (0, 1, "tool"),  # charge_card
    (1, 0, "model"),
    (1, 1, "tool"),  # send_receipt
    (2, 0, "model"),
]


@pytest.mark.parametrize(
    ("interrupt", "replayed"),
    [
        # The worker dies as charge_card starts: the first model response is journaled.
        ("charge_card", 1),
        # It dies as send_receipt starts: the charge and the second response are journaled.
        ("send_receipt", 3),
        # The model server goes away during the final request: both tools are journaled.
        ("final_request", 4),
    ],
)
def test_a_turn_interrupted_at_a_step_boundary_is_retried_without_repeating_a_step(
    db: Engine,
    settings: Settings,
    waker: CeleryWaker,
    api_client: TestClient,
    billing_model: FakeModel,
    interrupt: str,
    replayed: int,
) -> None:
    billing = Billing(die_in=interrupt if interrupt != "final_request" else None)
    agent = billing.agent(billing_model)
    cid = ingest_sms(db, "please charge my card").conversation_id
    models_before, tools_before = replayed_count("model"), replayed_count("tool")

    if interrupt == "final_request":
        billing_model.drop = {3}
        assert turn(db, settings, waker, cid, agent) == 0  # failed, released for retry
        retry_clock = utcnow
    else:
        with pytest.raises(WorkerDied):
            turn(db, settings, waker, cid, agent)
        retry_clock = after_the_lease(settings)
    assert [row[:3] for row in journal(db, cid)] == STEPS[:replayed]
    assert replies(db, cid) == []

    assert turn(db, settings, waker, cid, agent, clock=retry_clock) == 1

    assert replies(db, cid) == [REPLY]
    assert billing.charged == billing.sent == [f"{cid}:1"]  # each tool ran once
    assert billing_model.answered == 3  # each model step was answered (and billed) once
    assert journal(db, cid) == []  # folded into the turn record
    [record] = api_client.get(f"/v1/conversations/{cid}").json()["turns"]
    assert (record["model_requests"], record["input_tokens"], record["output_tokens"]) == (
        3,
        3 * 11,
        3 * 7,
    )  # usage counted once per step, replayed ones included
    steps = [(s["step"], s["call"], s["kind"]) for s in record["steps"]]
    assert sorted(steps) == STEPS
    assert [s["replayed"] for s in record["steps"]] == [True] * replayed + [False] * (
        len(STEPS) - replayed
    )
    assert [s["name"] for s in record["steps"] if s["kind"] == "tool"] == [
        "charge_card",
        "send_receipt",
    ]
    tool_replays = replayed // 2
    assert [c["replayed"] for c in record["tool_calls"]] == [True] * tool_replays + [False] * (
        2 - tool_replays
    )
    assert replayed_count("model") - models_before == replayed - tool_replays
    assert replayed_count("tool") - tools_before == tool_replays


def test_a_zombie_whose_lease_was_taken_writes_nothing_to_the_journal(
    db: Engine, settings: Settings, waker: CeleryWaker, billing_model: FakeModel
) -> None:
    successor = uuid.uuid4()

    def taken_over(ctx: RunContext[dormouse.TurnDeps]) -> None:
        # While charge_card runs, this worker stalls past its lease and another claims it.
        with transaction(db) as s:
            later = utcnow() + timedelta(seconds=settings.lease_seconds + 1)
            claimed = turn_store.claim(
                s, ctx.deps.conversation_id, token=successor, now=later, lease_seconds=30
            )
            assert claimed is not None

    billing = Billing(before_return=taken_over)
    cid = ingest_sms(db, "please charge my card").conversation_id
    assert turn(db, settings, waker, cid, billing.agent(billing_model)) == 0  # lease lost

    # The first response was journaled under the lease; the charge's result was refused,
    # and the zombie stopped there: no further model request, no receipt, no reply.
    assert journal(db, cid) == [(0, 0, "model", "fake-llm")]
    assert billing.charged == [f"{cid}:1"] and billing.sent == []
    assert billing_model.answered == 1
    assert replies(db, cid) == []
    with session_factory(db)() as s:
        conversation = s.get_one(Conversation, cid)
        assert (conversation.lease_token, conversation.turn_count) == (successor, 0)


def died_at_the_receipt(
    db: Engine, settings: Settings, waker: CeleryWaker, fake: FakeModel
) -> tuple[Billing, uuid.UUID]:
    """A turn whose worker died as send_receipt started: three steps journaled."""
    billing = Billing(die_in="send_receipt")
    cid = ingest_sms(db, "please charge my card").conversation_id
    with pytest.raises(WorkerDied):
        turn(db, settings, waker, cid, billing.agent(fake))
    assert len(journal(db, cid)) == 3
    return billing, cid


def test_an_agent_changed_between_crash_and_retry_starts_the_turn_fresh(
    db: Engine,
    settings: Settings,
    waker: CeleryWaker,
    api_client: TestClient,
    billing_model: FakeModel,
    caplog: pytest.LogCaptureFixture,
) -> None:
    billing, cid = died_at_the_receipt(db, settings, waker, billing_model)

    deployed = billing.agent(billing_model, instructions="You bill customers, politely.")
    with caplog.at_level("WARNING", logger="agent.runtime"):
        assert turn(db, settings, waker, cid, deployed, clock=after_the_lease(settings)) == 1

    [line] = [r.getMessage() for r in caplog.records if r.name == "agent.runtime"]
    assert f"turn 1 of conversation {cid} starts fresh" in line
    assert "model request 1 differs from the journaled one" in line
    assert replies(db, cid) == [REPLY]
    # Nothing replayed: the new agent asked again from the start, and the charge ran again,
    # with the same idempotency key (what a tool with side effects deduplicates by).
    assert billing_model.answered == 2 + 3
    assert billing.charged == [f"{cid}:1", f"{cid}:1"]
    [record] = api_client.get(f"/v1/conversations/{cid}").json()["turns"]
    assert [s["replayed"] for s in record["steps"]] == [False] * 5
    assert record["model_requests"] == 3
    assert journal(db, cid) == []


def test_a_replayed_built_in_still_decides_what_the_commit_applies(
    db: Engine,
    settings: Settings,
    waker: CeleryWaker,
    api_client: TestClient,
    billing_model: FakeModel,
    dormouse_cli: Callable[..., Result],
) -> None:
    billing_model.tool_plan = [("remember", {"fact": "pays by card"}), PLAN[1]]
    billing = Billing(die_in="send_receipt")
    cid = ingest_sms(db, "please send my receipt").conversation_id
    with pytest.raises(WorkerDied):
        turn(db, settings, waker, cid, billing.agent(billing_model))
    assert turn(
        db, settings, waker, cid, billing.agent(billing_model), clock=after_the_lease(settings)
    )

    with session_factory(db)() as s:
        assert s.scalars(select(MemoryEntry.text)).all() == ["pays by card"]  # remembered once
    [record] = api_client.get(f"/v1/conversations/{cid}").json()["turns"]
    assert [(c["name"], c["replayed"]) for c in record["tool_calls"]] == [
        ("remember", True),
        ("send_receipt", False),
    ]
    assert billing_model.answered == 3
    shown = dormouse_cli("conversations", "show", str(cid)).output
    assert 'remember({"fact": "pays by card"}) → remembered  [' in shown
    assert "replayed from the journal]" in shown


def test_the_journal_of_a_crashed_turn_goes_when_the_conversation_is_finished_and_wrapped_up(
    db: Engine,
    settings: Settings,
    waker: CeleryWaker,
    api_client: TestClient,
    billing_model: FakeModel,
) -> None:
    _, cid = died_at_the_receipt(db, settings, waker, billing_model)

    # An operator ends it before any retry: that turn will never commit.
    assert api_client.post(f"/v1/conversations/{cid}/finish", json={}).status_code == 200
    assert wrap_up(cid, engine=db, agents=AgentCatalog(default=None))
    assert journal(db, cid) == []


def test_a_message_arriving_between_crash_and_retry_waits_for_the_next_turn(
    db: Engine, settings: Settings, waker: CeleryWaker, billing_model: FakeModel
) -> None:
    billing, cid = died_at_the_receipt(db, settings, waker, billing_model)
    later = ingest_sms(db, "are you still there?")
    assert later.conversation_id == cid

    agent = billing.agent(billing_model)
    assert turn(db, settings, waker, cid, agent, clock=after_the_lease(settings)) == 1

    # The retry answered what the crashed attempt answered, from its journal: charged once.
    assert replies(db, cid) == [REPLY]
    assert billing.charged == billing.sent == [f"{cid}:1"]
    assert billing_model.answered == 3
    with session_factory(db)() as s:
        waiting = s.get_one(Message, later.message_id)
        assert (waiting.inbound_state, waiting.turn) == ("pending", None)


@pytest.mark.parametrize(
    "interrupted", [1, 2]
)  # the first model request, or the one after the charge
def test_a_turn_interrupted_by_a_second_message_then_killed_replays_it_at_the_same_step(
    db: Engine,
    settings: Settings,
    waker: CeleryWaker,
    api_client: TestClient,
    billing_model: FakeModel,
    interrupted: int,
) -> None:
    """A model request is interrupted by the customer's second message; the run resumes from
    the journal and asks again with it; the worker then dies as send_receipt starts. The retry
    begins where the attempt began and adds that message at the same step, so its replay
    matches: nothing is asked or charged twice, and the one reply answers both messages."""
    settings = settings.model_copy(update={"double_texting_sms": "interrupt"})
    billing_model.delays = {interrupted: 3.0}  # the request the second message interrupts
    billing = Billing(die_in="send_receipt")
    cid = ingest_sms(db, "please charge my card").conversation_id

    def second_message() -> None:
        billing_model.wait_for_requests(interrupted)
        ingest_sms(db, "and send the receipt to ann@example.com")
        waker.changed([cid])  # the hint the API sends after an ingest

    texting = threading.Thread(target=second_message)
    texting.start()
    with pytest.raises(WorkerDied):
        turn(db, settings, waker, cid, billing.agent(billing_model))
    texting.join()
    assert billing_model.cancelled == 1 and billing.charged == [f"{cid}:1"]
    with session_factory(db)() as s:
        kinds = s.scalars(select(Event.type).where(Event.conversation_id == cid)).all()
    assert "turn.interrupted" in kinds

    retry = billing.agent(billing_model)
    assert turn(db, settings, waker, cid, retry, clock=after_the_lease(settings)) == 1

    assert replies(db, cid) == [REPLY]
    assert billing.charged == billing.sent == [f"{cid}:1"]
    # The first, the one asked again with the second message, the final: each answered once.
    assert billing_model.answered == 3 and len(billing_model.requests) == 4
    asked_again = billing_model.requests[interrupted]["messages"]
    assert [m["content"] for m in asked_again if m["role"] == "user"][-1] == (
        "and send the receipt to ann@example.com"
    )
    with session_factory(db)() as s:
        assert not turn_store.has_pending(s, cid)  # both messages answered by this turn
    [record] = api_client.get(f"/v1/conversations/{cid}").json()["turns"]
    assert [s["replayed"] for s in record["steps"]] == [True, True, True, False, False]
