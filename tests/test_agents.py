"""The business's own agents: Pydantic AI agents driven by a scripted FunctionModel, on the
real database, through the API a developer reads them back from."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic_ai import Agent, RunContext
from pydantic_ai.messages import (
    ModelMessage,
    ModelResponse,
    RetryPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from sqlalchemy import Engine, select

import dormouse
from agent.catalog import AgentCatalog
from agent.runtime import OPENING_PROMPT
from api.app import create_app
from conversations.db import session_factory
from conversations.models import MemoryEntry, OutboxRow
from conversations.settings import Settings
from conversations.types import utcnow
from conversations.wakeup import CeleryWaker
from tests.conftest import API_KEY
from tests.factories import ingest_sms
from tests.fakes.model_api import FakeModel
from workers.turn import run_turn

Script = Callable[[list[ModelMessage], AgentInfo], ModelResponse]


@pytest.fixture
def client(db: Engine, settings: Settings, waker: CeleryWaker) -> Iterator[TestClient]:
    with TestClient(create_app(settings, db, waker), raise_server_exceptions=False) as c:
        c.headers["Authorization"] = f"Bearer {API_KEY}"
        yield c


def last_part(messages: list[ModelMessage]) -> Any:
    return messages[-1].parts[-1]


def returned(messages: list[ModelMessage]) -> list[str]:
    """What the tools of the previous step answered, as the model sees it."""
    return [
        str(p.content)
        for p in messages[-1].parts
        if isinstance(p, ToolReturnPart | RetryPromptPart)
    ]


def agent_with(script: Script, *tools: Any) -> Agent[dormouse.TurnDeps, str]:
    return Agent(FunctionModel(script), deps_type=dormouse.TurnDeps, tools=list(tools))


def turn(
    db: Engine,
    settings: Settings,
    waker: CeleryWaker,
    cid: uuid.UUID,
    agent: Any,
    service: str = "default",
    clock: Callable[[], datetime] = utcnow,
) -> int:
    catalog = AgentCatalog({service: agent})
    return run_turn(cid, engine=db, agents=catalog, settings=settings, waker=waker, clock=clock)


def replies(db: Engine, cid: uuid.UUID) -> list[str]:
    with session_factory(db)() as s:
        return list(
            s.scalars(
                select(OutboxRow.body)
                .where(OutboxRow.conversation_id == cid)
                .order_by(OutboxRow.id)
            )
        )


def test_the_acme_support_agent_looks_an_order_up_and_the_call_is_on_record(
    db: Engine,
    settings: Settings,
    waker: CeleryWaker,
    client: TestClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ACME_ORDERS_DB", str(tmp_path / "orders.db"))
    from examples.acme.agents import agents

    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if isinstance(last_part(messages), UserPromptPart):
            return ModelResponse(parts=[ToolCallPart("lookup_order", {"order_id": "a-1001"})])
        return ModelResponse(parts=[TextPart(f"Good news: {returned(messages)[0]}")])

    cid = ingest_sms(db, "where is my order a-1001?", service="support").conversation_id
    with agents["support"].override(model=FunctionModel(script)):
        assert turn(db, settings, waker, cid, agents["support"], "support") == 1

    assert replies(db, cid) == ["Good news: order A-1001: shipped, arrives Thursday"]
    detail = client.get(f"/v1/conversations/{cid}").json()
    [record] = detail["turns"]
    assert (record["turn_number"], record["agent"]) == (1, "pydantic-ai")
    assert record["model"] == "function:script"  # the model that answered: the test's
    [call] = record["tool_calls"]
    assert call["name"] == "lookup_order" and call["arguments"] == {"order_id": "a-1001"}
    assert call["result"] == "order A-1001: shipped, arrives Thursday" and call["error"] is None
    assert call["duration_ms"] >= 0
    assert record["model_requests"] == 2 and record["input_tokens"] > 0
    assert detail["usage"]["output_tokens"] == record["output_tokens"] > 0


def test_tools_see_the_turn_and_an_idempotency_key_that_survives_a_retry(
    db: Engine, settings: Settings, waker: CeleryWaker
) -> None:
    seen: list[dormouse.TurnDeps] = []

    @dormouse.tool
    def charge(ctx: RunContext[dormouse.TurnDeps], cents: int) -> str:
        """Charge the customer."""
        seen.append(dataclasses.replace(ctx.deps))
        return "charged"

    crash = [True]

    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if isinstance(last_part(messages), UserPromptPart):
            return ModelResponse(parts=[ToolCallPart("charge", {"cents": 500})])
        if crash.pop() if crash else False:
            raise ConnectionError("the model went away after the tool ran")
        return ModelResponse(parts=[TextPart("Done: charged 5.00")])

    agent = agent_with(script, charge)
    cid = ingest_sms(db, "charge me please").conversation_id
    assert turn(db, settings, waker, cid, agent) == 0  # crashed after the tool: released
    assert turn(db, settings, waker, cid, agent) == 1  # the retry commits, the charge replayed
    ingest_sms(db, "and once more")
    assert turn(db, settings, waker, cid, agent) == 1

    first, second = seen  # the retry took the charge from the step journal: charged once
    assert first.idempotency_key == f"{cid}:1"
    assert second.idempotency_key == f"{cid}:2"
    assert (first.conversation_id, first.service, first.channel) == (cid, "default", "sms")
    assert first.turn_number == 1 and second.turn_number == 2
    assert replies(db, cid) == ["Done: charged 5.00", "Done: charged 5.00"]


def test_built_in_tools_are_given_to_every_agent_and_apply_in_the_commit(
    db: Engine, settings: Settings, waker: CeleryWaker, client: TestClient
) -> None:
    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        assert {"end_conversation", "handoff_to_human", "remember"} <= {
            t.name for t in info.function_tools
        }
        if isinstance(last_part(messages), UserPromptPart):
            return ModelResponse(
                parts=[
                    ToolCallPart("remember", {"fact": "prefers email"}),
                    ToolCallPart("end_conversation", {"reason": "done"}),
                ]
            )
        return ModelResponse(parts=[TextPart("Bye now!")])

    cid = ingest_sms(db, "that's all, bye").conversation_id
    assert turn(db, settings, waker, cid, agent_with(script)) == 1
    detail = client.get(f"/v1/conversations/{cid}").json()
    assert (detail["status"], detail["finish_reason"]) == ("finished", "agent")
    assert replies(db, cid) == ["Bye now!"]
    with session_factory(db)() as s:
        assert s.scalars(select(MemoryEntry.text)).all() == ["prefers email"]


def test_tool_failures_go_back_to_the_model_and_are_recorded(
    db: Engine, settings: Settings, waker: CeleryWaker, client: TestClient
) -> None:
    def boom(ctx: RunContext[dormouse.TurnDeps]) -> str:
        """Always fails."""
        raise ValueError("the warehouse API is down")

    @dormouse.tool(timeout=0.2)
    def slow(ctx: RunContext[dormouse.TurnDeps]) -> str:
        """Takes too long."""
        time.sleep(2)
        return "too late"

    @dormouse.tool
    def lookup(ctx: RunContext[dormouse.TurnDeps], order_id: int) -> str:
        """Look an order up."""
        return f"order {order_id}"

    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if isinstance(last_part(messages), UserPromptPart):
            return ModelResponse(
                parts=[
                    ToolCallPart("boom", {}),
                    ToolCallPart("slow", {}),
                    ToolCallPart("lookup", {"order_id": "not a number"}),
                ]
            )
        return ModelResponse(parts=[TextPart(" | ".join(returned(messages)))])

    cid = ingest_sms(db, "try everything").conversation_id
    assert turn(db, settings, waker, cid, agent_with(script, boom, slow, lookup)) == 1
    [told] = replies(db, cid)
    assert "error: ValueError: the warehouse API is down" in told
    assert "slow" in told and "0.2" in told  # abandoned past its limit, and the model knows
    assert "valid integer" in told  # invalid arguments come back for the model to correct

    calls = {
        c["name"]: c
        for c in client.get(f"/v1/conversations/{cid}").json()["turns"][0]["tool_calls"]
    }
    assert calls["boom"]["error"] == "ValueError: the warehouse API is down"
    assert calls["boom"]["result"] is None
    assert calls["slow"]["error"] and "0.2" in calls["slow"]["error"]
    assert calls["lookup"]["error"].startswith("invalid arguments")


def test_a_model_that_keeps_calling_tools_is_stopped_and_a_person_takes_over(
    db: Engine, settings: Settings, waker: CeleryWaker, client: TestClient
) -> None:
    settings = settings.model_copy(update={"turn_max_model_requests": 3})
    calls = []

    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        calls.append(1)
        return ModelResponse(parts=[ToolCallPart("remember", {"fact": f"loop {len(calls)}"})])

    cid = ingest_sms(db, "hello").conversation_id
    assert turn(db, settings, waker, cid, agent_with(script)) == 1
    assert len(calls) == 3
    detail = client.get(f"/v1/conversations/{cid}").json()
    assert detail["status"] == "handoff"
    assert "TURN_MAX_MODEL_REQUESTS" in detail["handoff_reason"]
    assert replies(db, cid) == [settings.quarantine_message]
    with session_factory(db)() as s:  # what the stopped turn decided is not applied
        assert s.scalars(select(MemoryEntry)).all() == []


def test_an_outbound_opening_gives_the_model_a_user_side_prompt(
    db: Engine, settings: Settings, waker: CeleryWaker, client: TestClient
) -> None:
    prompts: list[str] = []

    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        part = last_part(messages)
        assert isinstance(part, UserPromptPart)
        prompts.append(str(part.content))
        return ModelResponse(parts=[TextPart("Hi! Your invoice is ready.")])

    started = client.post(
        "/v1/conversations",
        json={"service": "billing", "channel": "sms", "to": "+14155550123", "context": {"x": 1}},
    )
    assert started.status_code == 201, started.text
    cid = uuid.UUID(started.json()["id"])
    assert turn(db, settings, waker, cid, agent_with(script), "billing") == 1
    assert prompts == [OPENING_PROMPT]
    assert replies(db, cid) == ["Hi! Your invoice is ready."]


def test_a_model_slower_than_the_turn_deadline_is_abandoned_and_nothing_commits(
    db: Engine, settings: Settings, waker: CeleryWaker, client: TestClient
) -> None:
    # Threads pools do not enforce Celery's time limits: the turn keeps its own deadline.
    settings = settings.model_copy(update={"turn_time_limit": 1})

    async def stuck(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        await asyncio.sleep(30)
        return ModelResponse(parts=[TextPart("far too late")])

    cid = ingest_sms(db, "hello?").conversation_id
    started = time.monotonic()
    assert turn(db, settings, waker, cid, agent_with(stuck)) == 0
    assert time.monotonic() - started < 10  # the 30 s model call was not waited for
    detail = client.get(f"/v1/conversations/{cid}").json()
    assert detail["status"] == "suspended" and detail["turn_count"] == 0
    assert "0.9" in detail["last_error"]  # the deadline, 90% of TURN_TIME_LIMIT
    assert replies(db, cid) == []


def test_a_model_server_that_is_down_is_one_log_line_naming_it_and_the_retry(
    db: Engine, settings: Settings, waker: CeleryWaker, caplog: pytest.LogCaptureFixture
) -> None:
    import socket

    from agent.catalog import default_agent

    with socket.socket() as free:  # a port nothing listens on: connections are refused
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    down = f"http://127.0.0.1:{port}/v1"
    settings = settings.model_copy(
        update={"model_base_url": down, "model_name": "fake-llm", "model_retries": 0}
    )
    cid = ingest_sms(db, "anyone there?").conversation_id
    with caplog.at_level("ERROR", logger="workers.turn"):
        assert turn(db, settings, waker, cid, default_agent(settings)) == 0
    [record] = [r for r in caplog.records if r.name == "workers.turn"]
    line = record.getMessage()
    assert record.exc_info is None and "\n" not in line
    assert f"model openai-chat:fake-llm at {down}" in line and "service 'default'" in line
    assert "ModelConnectionError" in line
    assert f"attempt 1 of {settings.max_turn_attempts}; retried within" in line
    assert replies(db, cid) == []


def test_a_turn_record_names_the_model_as_dormouse_agents_does(
    db: Engine,
    settings: Settings,
    waker: CeleryWaker,
    client: TestClient,
    fake_model: FakeModel,
) -> None:
    from agent.catalog import default_agent
    from agent.runtime import model_name

    settings = settings.model_copy(
        update={"model_base_url": fake_model.url, "model_name": "fake-llm"}
    )
    agent = default_agent(settings)
    cid = ingest_sms(db, "hello").conversation_id
    turn(db, settings, waker, cid, agent)
    [record] = client.get(f"/v1/conversations/{cid}").json()["turns"]
    assert record["model"] == model_name(agent) == f"openai-chat:fake-llm at {fake_model.url}"
