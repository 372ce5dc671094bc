"""A chat over the live API, against real API and worker processes: start, interact (JSON
and multipart), resume, idempotent retries, a client that hangs up, and the end."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import API_KEY
from tests.e2e.stack import Stack

pytestmark = pytest.mark.e2e

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def stream(
    stack: Stack, path: str, headers: dict[str, str] | None = None, **kwargs: Any
) -> list[dict[str, Any]]:
    """Every line of a finite NDJSON answer (heartbeats skipped)."""
    headers = {**AUTH, **(headers or {})}
    with httpx.stream("POST", stack.base + path, headers=headers, timeout=60, **kwargs) as answer:
        assert answer.status_code == 200, answer.read()
        assert answer.headers["content-type"].startswith("application/x-ndjson")
        return [json.loads(line) for line in answer.iter_lines() if line.strip()]


def kinds(lines: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(e["type"], (e.get("message") or {}).get("role")) for e in lines]


def test_a_chat_from_start_to_end_over_the_live_api(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack().start(workers=1)
    started = stream(
        stack,
        "/v1/chat/conversations",
        json={"service": "default", "user_id": "web-ada", "message": "hello"},
    )
    assert kinds(started) == [
        ("conversation-created", None),
        ("new-message", "customer"),
        ("new-message", "agent"),
        ("interaction-complete", None),
    ]
    cid = started[0]["conversation_id"]
    assert '"hello"' in started[2]["message"]["text"]

    again = httpx.post(
        stack.base + "/v1/chat/conversations",
        json={"service": "default", "user_id": "web-ada"},
        headers=AUTH,
    )
    assert again.status_code == 409 and again.json()["conversation_id"] == cid

    said = stream(stack, f"/v1/chat/conversations/{cid}/interact", json={"text": "and now?"})
    assert kinds(said) == [
        ("user-message-available", "customer"),
        ("new-message", "agent"),
        ("interaction-complete", None),
    ]
    assert said[0]["message"]["text"] == "and now?"
    assert "2 messages from you" in said[1]["message"]["text"]

    form = stream(
        stack, f"/v1/chat/conversations/{cid}/interact", files={"recorded_message": (None, "hi")}
    )
    assert kinds(form)[0] == ("user-message-available", "customer")
    assert form[0]["message"]["text"] == "hi" and kinds(form)[-1][0] == "interaction-complete"

    bye = stream(stack, f"/v1/chat/conversations/{cid}/interact", json={"text": "ok, bye!"})
    assert kinds(bye)[-1] == ("end-session", None) and bye[-1]["reason"] == "agent"
    finished = httpx.post(
        stack.base + f"/v1/chat/conversations/{cid}/interact", json={"text": "x"}, headers=AUTH
    )
    assert finished.status_code == 409 and "finished" in finished.json()["detail"]


def test_the_agent_writes_first_and_a_retry_says_it_once(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack().start(workers=1)
    opening = stream(
        stack, "/v1/chat/conversations", json={"service": "default", "user_id": "web-bo"}
    )
    assert kinds(opening) == [
        ("conversation-created", None),
        ("new-message", "agent"),
        ("interaction-complete", None),
    ]
    cid = opening[0]["conversation_id"]
    path = f"/v1/chat/conversations/{cid}/interact"
    key = {"Idempotency-Key": "order-question-1"}
    first = stream(stack, path, json={"text": "where is my order?"}, headers=key)
    retry = stream(stack, path, json={"text": "where is my order?"}, headers=key)
    assert retry[0]["message"]["id"] == first[0]["message"]["id"]
    assert [e["cursor"] for e in retry] == [e["cursor"] for e in first]
    inbound = [m for m in stack.conversation(cid)["messages"] if m["body"] == "where is my order?"]
    assert len(inbound) == 1


def test_a_client_that_hangs_up_changes_nothing(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack().start(workers=1)
    opening = stream(
        stack, "/v1/chat/conversations", json={"service": "default", "user_id": "web-cy"}
    )
    cid = opening[0]["conversation_id"]
    url = stack.base + f"/v1/chat/conversations/{cid}/interact"
    with httpx.stream("POST", url, json={"text": "are you there?"}, headers=AUTH) as answer:
        first = json.loads(next(line for line in answer.iter_lines() if line.strip()))
    assert first["type"] == "user-message-available"  # and the client is gone
    with httpx.stream(
        "GET",
        stack.base + f"/v1/conversations/{cid}/events",
        params={"after": first["cursor"]},
        headers=AUTH,
        timeout=60,
    ) as events:
        for line in events.iter_lines():
            if line.strip() and json.loads(line)["type"] == "interaction-complete":
                break
    reply = stack.conversation(cid)["messages"][-1]
    assert reply["role"] == "agent" and "are you there?" in reply["body"]


@pytest.mark.parametrize(
    ("body", "status", "named"),
    [
        ({"content": b"hello", "headers": {"Content-Type": "text/plain"}}, 415, "json"),
        ({"json": {"text": ""}}, 422, "text"),
        ({"json": {"txt": "hi"}}, 422, "text"),
        ({"files": {"other": (None, "hi")}}, 422, "recorded_message"),
    ],
)
def test_an_interaction_the_api_cannot_read_is_refused_naming_why(
    make_stack: Callable[..., Stack], body: dict[str, Any], status: int, named: str
) -> None:
    stack = make_stack().start(workers=1)
    opening = stream(
        stack, "/v1/chat/conversations", json={"service": "default", "user_id": "web-dee"}
    )
    cid = opening[0]["conversation_id"]
    headers = {**AUTH, **body.pop("headers", {})}
    answer = httpx.post(
        stack.base + f"/v1/chat/conversations/{cid}/interact", headers=headers, **body
    )
    assert answer.status_code == status and named in answer.json()["detail"]
