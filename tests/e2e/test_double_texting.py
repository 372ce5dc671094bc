"""Double texting over the live chat API, against real API and worker processes and a slow
local model: a second line sent while the turn waits on the model interrupts it (one answer
to both, the first request cancelled at the model server), or waits for its own turn."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.stack import Stack
from tests.e2e.test_live_chat import stream
from tests.fakes.model_api import FakeModel

pytestmark = pytest.mark.e2e

FIRST, SECOND = "my order is late", "and the box was damaged"
# A 2 s model needs a turn longer than the e2e stack's 3 s.
SLOW = {"MODEL_TIMEOUT": "10", "TURN_TIME_LIMIT": "12", "LEASE_SECONDS": "15"}


def two_lines(
    stack: Stack, model: FakeModel, gap: float
) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    """Open a chat, then say two lines ``gap`` seconds apart, the second once the model is
    asked the first (a worker slower to take the turn would see both lines before asking:
    one answer too, but nothing to interrupt); both interactions' lines."""
    opened = stream(
        stack, "/v1/chat/conversations", json={"service": "default", "user_id": "web-dt"}
    )
    cid = opened[0]["conversation_id"]
    path = f"/v1/chat/conversations/{cid}/interact"
    first: list[dict[str, Any]] = []
    asked = len(model.requests)
    saying = threading.Thread(
        target=lambda: first.extend(stream(stack, path, json={"text": FIRST}))
    )
    saying.start()
    time.sleep(gap)
    model.wait_for_requests(asked + 1)
    second = stream(stack, path, json={"text": SECOND})
    saying.join(timeout=60)
    return cid, first, second


def said_by_agent(lines: list[dict[str, Any]]) -> list[str]:
    return [e["message"]["text"] for e in lines if (e.get("message") or {}).get("role") == "agent"]


def agent_lines(stack: Stack, cid: str) -> list[str]:
    return [m["body"] for m in stack.conversation(cid)["messages"] if m["role"] == "agent"]


def test_a_second_line_during_the_model_call_interrupts_it_one_answer_to_both(
    make_stack: Callable[..., Stack], fake_model: FakeModel
) -> None:
    fake_model.delay, fake_model.answer_all = 2.0, True
    stack = make_stack(MODEL_BASE_URL=fake_model.url, **SLOW).start(workers=1)
    cid, first, second = two_lines(stack, fake_model, gap=0.2)

    both = f"ack: {FIRST} / {SECOND}"
    assert agent_lines(stack, cid)[1:] == [both]  # after the opening's answer: one, to both
    assert fake_model.cancelled == 1  # the request that had only the first line
    assert fake_model.answered == 2  # the opening and the answer to both
    shown = [e["type"] for e in first]
    assert "interrupted" in shown and shown[-1] == "interaction-complete"
    assert said_by_agent(first) == [both] and said_by_agent(second) == [both]
    [turn] = [t for t in stack.conversation(cid)["turns"] if t["turn_number"] == 2]
    assert turn["model_requests"] == 1  # the cancelled request answered nothing


def test_with_coalesce_a_second_line_waits_for_a_turn_of_its_own(
    make_stack: Callable[..., Stack], fake_model: FakeModel
) -> None:
    fake_model.delay, fake_model.answer_all = 1.0, True
    stack = make_stack(MODEL_BASE_URL=fake_model.url, DOUBLE_TEXTING_CHAT="coalesce", **SLOW)
    stack.start(workers=1)
    cid, first, second = two_lines(stack, fake_model, gap=0.2)

    assert agent_lines(stack, cid)[1:] == [f"ack: {FIRST}", f"ack: {SECOND}"]
    assert fake_model.cancelled == 0
    assert "interrupted" not in [e["type"] for e in first + second]
