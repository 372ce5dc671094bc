"""Silence closes a conversation: real API, worker and beat processes, a 2-second timeout."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.conftest import API_KEY
from tests.e2e.stack import Stack, wait_until
from tests.fakes.twilio_api import FakeTwilio

pytestmark = pytest.mark.e2e

CUSTOMER = "+14155550199"


def test_silence_closes_with_a_closing_message_and_the_next_text_opens_a_new_one(
    make_stack: Callable[..., Stack], fake_twilio: FakeTwilio
) -> None:
    stack = make_stack(TIMEOUT_SWEEP_INTERVAL="0.5").start(workers=1)
    put = httpx.put(
        stack.base + "/v1/timeouts",
        json={"channel": "sms", "inactivity": 2, "closing_message": "Closing this chat. Bye!"},
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    assert put.status_code == 200, put.text

    stack.text("hello", CUSTOMER)
    fake_twilio.wait_for(1, to=CUSTOMER)
    [first] = stack.conversations(CUSTOMER)

    closing = fake_twilio.wait_for(2, to=CUSTOMER, timeout=20)[1]
    assert closing.body == "Closing this chat. Bye!"
    closed = wait_until(
        lambda: (c := stack.conversation(first["id"]))["summary"] and c,
        what="wrap-up to store the summary",
    )
    assert (closed["status"], closed["finish_reason"]) == ("finished", "timeout")
    assert '"hello"' in closed["summary"]

    stack.text("hi again", CUSTOMER)
    greeting = fake_twilio.wait_for(3, to=CUSTOMER)[2]
    assert greeting.body.startswith("Hi!")
    ids = {c["id"] for c in stack.conversations(CUSTOMER)}
    assert len(ids) == 2 and first["id"] in ids
