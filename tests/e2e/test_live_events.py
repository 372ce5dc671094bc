"""Follow a conversation live: its events as NDJSON or SSE, resumed by cursor with nothing
lost and nothing repeated, from real API and worker processes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import API_KEY
from tests.e2e.stack import Stack
from tests.fakes.twilio_api import FakeTwilio

pytestmark = pytest.mark.e2e

CUSTOMER = "+14155550177"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def read_events(
    stack: Stack, conversation_id: str, *, until: Callable[[dict[str, Any]], bool], **params: str
) -> list[dict[str, Any]]:
    """Lines of the NDJSON stream (heartbeats skipped) up to the one ``until`` accepts."""
    got: list[dict[str, Any]] = []
    url = f"{stack.base}/v1/conversations/{conversation_id}/events"
    with httpx.stream("GET", url, params=params, headers=AUTH, timeout=30) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("application/x-ndjson")
        for line in answer.iter_lines():
            if not line.strip():
                continue
            got.append(json.loads(line))
            if until(got[-1]):
                return got
    raise AssertionError(f"the stream ended before the awaited event: {got}")


def sse_events(response: httpx.Response) -> Iterator[tuple[str, str, dict[str, Any]]]:
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if line.startswith(":"):
            continue
        if not line:
            if fields:
                yield fields["id"], fields["event"], json.loads(fields["data"])
            fields = {}
            continue
        name, _, value = line.partition(": ")
        fields[name] = value


def test_events_stream_live_and_resume_after_a_drop_with_nothing_lost_or_repeated(
    make_stack: Callable[..., Stack], fake_twilio: FakeTwilio
) -> None:
    stack = make_stack().start(workers=1)
    assert stack.text("hello there", CUSTOMER).status_code == 200
    [conversation] = stack.conversations(CUSTOMER)
    cid = conversation["id"]

    first = read_events(stack, cid, until=lambda e: e["type"] == "interaction-complete")
    assert [e["type"] for e in first] == [
        "conversation-created",
        "new-message",
        "new-message",
        "interaction-complete",
    ]
    inbound, reply = first[1]["message"], first[2]["message"]
    assert (inbound["direction"], inbound["role"], inbound["text"]) == (
        "inbound",
        "customer",
        "hello there",
    )
    assert (reply["direction"], reply["role"]) == ("outbound", "agent")
    assert reply["text"] == fake_twilio.wait_for(1, to=CUSTOMER)[0].body
    assert all(e["conversation_id"] == cid for e in first)
    cursors = [int(e["cursor"]) for e in first]
    assert cursors == sorted(set(cursors))

    # The client dropped after the first turn; the customer wrote again meanwhile.
    stack.text("still there?", CUSTOMER)
    fake_twilio.wait_for(2, to=CUSTOMER)
    resumed = read_events(
        stack, cid, after=first[-1]["cursor"], until=lambda e: e["type"] == "interaction-complete"
    )
    assert [(e["type"], e.get("message", {}).get("text")) for e in resumed][:2] == [
        ("new-message", "still there?"),
        ("new-message", fake_twilio.wait_for(2, to=CUSTOMER)[1].body),
    ]
    assert int(resumed[0]["cursor"]) > cursors[-1]

    # SSE from the same cursor, resumed with Last-Event-ID: the same events, as SSE frames.
    url = f"{stack.base}/v1/conversations/{cid}/events"
    headers = {**AUTH, "Accept": "text/event-stream", "Last-Event-ID": first[-1]["cursor"]}
    with httpx.stream("GET", url, headers=headers, timeout=30) as answer:
        assert answer.headers["content-type"].startswith("text/event-stream")
        frames = []
        for frame in sse_events(answer):
            frames.append(frame)
            if frame[1] == "interaction-complete":
                break
    assert [(i, kind) for i, kind, _ in frames] == [(e["cursor"], e["type"]) for e in resumed]

    # A goodbye finishes the conversation: the stream says end-session and closes.
    stack.text("ok, bye!", CUSTOMER)
    ending = read_events(
        stack, cid, after=resumed[-1]["cursor"], until=lambda e: e["type"] == "end-session"
    )
    assert ending[-1]["reason"] == "agent"


def test_events_of_an_unknown_conversation_or_a_bad_cursor_are_refused(
    make_stack: Callable[..., Stack],
) -> None:
    stack = make_stack().start(workers=1)
    missing = httpx.get(
        f"{stack.base}/v1/conversations/00000000-0000-0000-0000-000000000000/events", headers=AUTH
    )
    assert missing.status_code == 404
    stack.text("hi", CUSTOMER)
    [conversation] = stack.conversations(CUSTOMER)
    bad = httpx.get(
        f"{stack.base}/v1/conversations/{conversation['id']}/events",
        params={"after": "yesterday"},
        headers=AUTH,
    )
    assert bad.status_code == 422 and bad.json()["detail"].startswith("after:")
