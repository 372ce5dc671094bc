"""Bursts, kill -9 mid-turn, a broker that is down: nothing lost, nothing sent twice."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest

from cli.embedded import EmbeddedBroker
from tests.conftest import Backend
from tests.e2e.stack import Stack, free_port, wait_until
from tests.fakes.model_api import FakeModel
from tests.fakes.twilio_api import FakeTwilio

pytestmark = pytest.mark.e2e

CUSTOMER = "+15555550188"


def inbound(stack: Stack, conversation_id: str) -> list[dict]:
    messages = stack.conversation(conversation_id)["messages"]
    return [m for m in messages if m["direction"] == "inbound"]


def test_a_burst_of_20_is_answered_in_order_one_turn_at_a_time_and_coalesced(
    make_stack: Callable[..., Stack], fake_twilio: FakeTwilio, fake_model: FakeModel
) -> None:
    fake_model.delay = 0.3
    stack = make_stack(MODEL_BASE_URL=fake_model.url).start(workers=2)
    for i in range(20):
        assert stack.text(f"message {i:02}", CUSTOMER).status_code == 200

    [conv] = stack.conversations(CUSTOMER)
    messages = wait_until(
        lambda: (
            (m := inbound(stack, conv["id"])) and all(x["inbound_state"] == "done" for x in m) and m
        ),
        timeout=60,
        what="every message to be inside a committed turn",
    )
    assert [m["body"] for m in messages] == [f"message {i:02}" for i in range(20)]
    turns = [m["turn"] for m in messages]
    assert turns == sorted(turns), "a later message was answered in an earlier turn"
    assert len(set(turns)) < 20, "messages were not coalesced"
    assert fake_model.max_in_flight == 1, "two turns of one conversation ran at once"

    # One reply per turn, each answering the newest message that turn saw.
    last_of_turn: dict[int, str] = defaultdict(str)
    for m in messages:
        last_of_turn[m["turn"]] = m["body"]
    replies = fake_twilio.wait_for(len(last_of_turn), to=CUSTOMER, timeout=30)
    assert sorted(r.body for r in replies) == sorted(f"ack: {b}" for b in last_of_turn.values())


def test_kill_9_mid_turn_another_worker_finishes_it_and_nothing_is_sent_twice(
    make_stack: Callable[..., Stack], fake_twilio: FakeTwilio, fake_model: FakeModel
) -> None:
    fake_model.delay = 30  # the first turn hangs in the model call until we kill its worker
    stack = make_stack(MODEL_BASE_URL=fake_model.url).start(workers=0)
    stack.start_worker("doomed", pool="solo")
    stack.text("are you there?", CUSTOMER)
    fake_model.wait_for_requests(1)

    stack.kill9("doomed")
    fake_model.delay = 0
    [conv] = stack.conversations(CUSTOMER)
    assert stack.conversation(conv["id"])["status"] == "running"  # the dead worker's lease

    stack.start_worker("survivor")
    [reply] = fake_twilio.wait_for(1, to=CUSTOMER, timeout=40)
    assert reply.body == "ack: are you there?"
    detail = wait_until(
        lambda: (d := stack.conversation(conv["id"]))["status"] == "suspended" and d,
        what="the conversation to be suspended again",
    )
    assert [m["inbound_state"] for m in detail["messages"] if m["direction"] == "inbound"] == [
        "done"
    ]
    time.sleep(3)  # several redrive sweeps later, still exactly one reply
    assert len(fake_twilio.sent_to(CUSTOMER)) == 1
    assert stack.conversation(conv["id"])["turn_count"] == 1


def test_broker_down_webhook_is_accepted_and_answered_once_the_broker_is_back(
    make_stack: Callable[..., Stack], fake_twilio: FakeTwilio, migrated: Backend, tmp_path: Path
) -> None:
    broker = EmbeddedBroker(tmp_path / "own-broker.sock", port=free_port())
    broker.start()
    own = Backend(migrated.name, migrated.database_url, broker.url, migrated.data_dir)
    stack = make_stack(own).start(workers=1)
    try:
        broker.stop()
        response = stack.text("is anyone there?", CUSTOMER)
        assert response.status_code == 200
        [conv] = stack.conversations(CUSTOMER)
        assert inbound(stack, conv["id"])[0]["inbound_state"] == "pending"
        assert fake_twilio.sent_to(CUSTOMER) == []

        broker.start()
        [reply] = fake_twilio.wait_for(1, to=CUSTOMER, timeout=60)
        assert '"is anyone there?"' in reply.body
    finally:
        stack.stop()
        broker.stop()
