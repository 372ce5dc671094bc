"""A customer texts; real API, worker and beat processes answer through the fake Twilio."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.e2e.stack import Stack, wait_until
from tests.fakes.twilio_api import FakeTwilio

pytestmark = pytest.mark.e2e

CUSTOMER = "+14155550123"


def test_conversation_round_trip_with_status_callbacks_and_a_new_one_after_goodbye(
    make_stack: Callable[..., Stack], fake_twilio: FakeTwilio
) -> None:
    stack = make_stack().start(workers=1)

    assert stack.text("hello there", "+1 415-555-0123").status_code == 200
    [greeting] = fake_twilio.wait_for(1, to=CUSTOMER)
    assert greeting.body.startswith("Hi! You're talking to the default assistant.")
    assert '"hello there"' in greeting.body and "1 message from you" in greeting.body

    for status in ("sent", "delivered"):
        assert fake_twilio.send_status_callback(greeting.sid, status) == 200
    [conv] = stack.conversations(CUSTOMER)
    detail = wait_until(
        lambda: (
            (d := stack.conversation(conv["id"]))["messages"][-1]["delivery_status"] == "delivered"
            and d
        ),
        what="the delivered status callback to be recorded",
    )
    assert detail["status"] == "suspended"
    assert [(m["direction"], m["role"]) for m in detail["messages"]] == [
        ("inbound", "customer"),
        ("outbound", "agent"),
    ]

    stack.text("still there?", CUSTOMER)
    second = fake_twilio.wait_for(2, to=CUSTOMER)[1]
    assert "2 messages from you" in second.body and not second.body.startswith("Hi!")

    stack.text("ok, bye!", CUSTOMER)
    assert "Goodbye" in fake_twilio.wait_for(3, to=CUSTOMER)[2].body
    finished = wait_until(
        lambda: (c := stack.conversation(conv["id"]))["status"] == "finished" and c,
        what="the conversation to finish",
    )
    assert finished["finish_reason"] == "agent"

    stack.text("hi again", CUSTOMER)
    assert fake_twilio.wait_for(4, to=CUSTOMER)[3].body.startswith("Hi!")
    conversations = stack.conversations(CUSTOMER)
    assert len(conversations) == 2 and {c["status"] for c in conversations} == {
        "finished",
        "suspended",
    }
    # An operator reads the worker's log: one line per task, not the SDK's request dumps.
    assert "twilio.http_client" not in (stack.workdir / "worker0.log").read_text()


def test_a_retried_webhook_is_answered_once(
    make_stack: Callable[..., Stack], fake_twilio: FakeTwilio
) -> None:
    stack = make_stack().start(workers=1)
    for _ in range(3):
        assert stack.text("only once", CUSTOMER, sid="SM" + "d" * 32).status_code == 200
    fake_twilio.wait_for(1, to=CUSTOMER)
    [conv] = stack.conversations(CUSTOMER)
    wait_until(lambda: stack.conversation(conv["id"])["turn_count"] == 1, what="the turn")
    # Give any duplicate turn time to show up before counting replies.
    wait_until(lambda: stack.get("/v1/outbox"), what="outbox")
    import time

    time.sleep(2)
    assert len(fake_twilio.sent_to(CUSTOMER)) == 1
    assert stack.conversation(conv["id"])["turn_count"] == 1
