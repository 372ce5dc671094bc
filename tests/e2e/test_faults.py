"""Bursts, kill -9 mid-turn, a broker that is down or restarts mid-turn: nothing lost, nothing
sent twice, no process dies."""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from cli.embedded import EmbeddedBroker
from tests.conftest import Backend
from tests.e2e.stack import Stack, wait_until
from tests.fakes.model_api import FakeModel
from tests.fakes.twilio_api import FakeTwilio

pytestmark = pytest.mark.e2e

CUSTOMER = "+14155550188"


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
    for log in stack.workdir.glob("worker*.log"):  # no false alarm from workers/watchdog.py
        assert "stopped consuming" not in log.read_text()

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
    own_broker: EmbeddedBroker,
    on_own_broker: Backend,
    make_stack: Callable[..., Stack],
    fake_twilio: FakeTwilio,
) -> None:
    stack = make_stack(on_own_broker).start(workers=1)
    own_broker.stop()
    response = stack.text("is anyone there?", CUSTOMER)
    assert response.status_code == 200
    [conv] = stack.conversations(CUSTOMER)
    assert inbound(stack, conv["id"])[0]["inbound_state"] == "pending"
    assert fake_twilio.sent_to(CUSTOMER) == []

    own_broker.start()
    [reply] = fake_twilio.wait_for(1, to=CUSTOMER, timeout=60)
    assert '"is anyone there?"' in reply.body


@pytest.mark.parametrize("pool", ["prefork", "solo"])
def test_broker_killed_mid_turn_the_worker_survives_and_the_reply_is_sent_once(
    pool: str,
    own_broker: EmbeddedBroker,
    on_own_broker: Backend,
    make_stack: Callable[..., Stack],
    fake_twilio: FakeTwilio,
    fake_model: FakeModel,
) -> None:
    # The worker holds an unacknowledged late-ack turn when Redis dies: celery 5.7 used to
    # exit (status 0) on an AttributeError while reconnecting.
    fake_model.delay = 4
    slow = {"MODEL_BASE_URL": fake_model.url, "MODEL_TIMEOUT": "10"}
    limits = {"TURN_TIME_LIMIT": "12", "LEASE_SECONDS": "15"}
    stack = make_stack(on_own_broker, **slow, **limits).start(workers=1, pool=pool)
    worker = stack.processes["worker0"]
    assert stack.text("are you still there?", CUSTOMER).status_code == 200
    fake_model.wait_for_requests(1)
    own_broker.kill()
    time.sleep(1)
    own_broker.start()

    [reply] = fake_twilio.wait_for(1, to=CUSTOMER, timeout=40)
    assert reply.body == "ack: are you still there?"
    # The same worker, reconnected, answers the next message.
    assert stack.text("good", CUSTOMER).status_code == 200
    replies = fake_twilio.wait_for(2, to=CUSTOMER, timeout=40)
    assert [r.body for r in replies] == ["ack: are you still there?", "ack: good"]
    assert worker.poll() is None, f"the worker exited with {worker.returncode}"
    time.sleep(3)  # redrive passes later, still one reply each
    assert len(fake_twilio.sent_to(CUSTOMER)) == 2


def test_ten_concurrent_copies_of_each_webhook_store_and_answer_each_message_once(
    make_stack: Callable[..., Stack], fake_twilio: FakeTwilio
) -> None:
    # Twilio retries a webhook it did not see answered; copies may arrive at the same time.
    stack = make_stack().start(workers=2)
    customers = [f"+1415555031{i:1d}" for i in range(10)]
    posts = [("SM" + f"{i:032x}", number) for i, number in enumerate(customers)] * 10
    random.Random(7).shuffle(posts)
    with ThreadPoolExecutor(max_workers=20) as pool:
        codes = list(pool.map(lambda p: stack.text("just once", p[1], sid=p[0]).status_code, posts))
    assert codes == [200] * len(posts)

    for number in customers:
        [reply] = fake_twilio.wait_for(1, to=number, timeout=30)
        assert '"just once"' in reply.body and "1 message from you" in reply.body
    time.sleep(3)  # redrive passes later
    for number in customers:
        [conv] = stack.conversations(number)
        assert len(inbound(stack, conv["id"])) == 1
        assert len(fake_twilio.sent_to(number)) == 1


def test_broker_down_while_every_slot_is_busy_the_worker_consumes_again_once_it_is_back(
    own_broker: EmbeddedBroker,
    on_own_broker: Backend,
    make_stack: Callable[..., Stack],
    fake_twilio: FakeTwilio,
    fake_model: FakeModel,
) -> None:
    # Both pool slots busy (no BRPOP outstanding) and both turns finish while Redis is down:
    # their acks fail, and without workers/watchdog.py the worker never asked Redis again.
    fake_model.delay = 1.0
    model = {"MODEL_BASE_URL": fake_model.url, "MODEL_TIMEOUT": "10"}
    stack = make_stack(on_own_broker, **model).start(workers=1)
    first, second, later = "+14155550401", "+14155550402", "+14155550403"
    stack.text("one", first)
    stack.text("two", second)
    fake_model.wait_for_requests(2)
    own_broker.kill()
    time.sleep(3)  # the turns end, their acks fail
    own_broker.start()

    fake_twilio.wait_for(1, to=first, timeout=40)
    fake_twilio.wait_for(1, to=second, timeout=40)
    fake_model.delay = 0
    stack.text("three", later)
    [reply] = fake_twilio.wait_for(1, to=later, timeout=40)
    assert reply.body == "ack: three"
    assert "acks were lost and stopped consuming" in (stack.workdir / "worker0.log").read_text()


def test_kill_9_of_a_turn_worker_holding_many_turns_each_is_answered_once_after_redrive(
    make_stack: Callable[..., Stack], fake_twilio: FakeTwilio, fake_model: FakeModel
) -> None:
    fake_model.delay = 30  # every turn waits on the model until its worker is killed
    stack = make_stack(MODEL_BASE_URL=fake_model.url).start(workers=0)
    turns = ["worker", "--queues", "turns", "--turn-concurrency", "32"]
    stack.spawn("turns", *turns, "--hostname", "turns@e2e")
    stack.spawn("deliveries", "worker", "--queues", "deliveries", "--hostname", "deliveries@e2e")
    customers = [f"+155555{i:05d}" for i in range(20)]
    for customer in customers:
        assert stack.text("are you there?", customer).status_code == 200
    wait_until(
        lambda: fake_model.in_flight >= len(customers), 30, "20 turns in flight in one worker"
    )

    stack.kill9("turns")
    fake_model.delay = 0
    stack.spawn("survivor", *turns, "--hostname", "survivor@e2e")
    for customer in customers:
        [reply] = fake_twilio.wait_for(1, to=customer, timeout=60)
        assert reply.body == "ack: are you there?"
    time.sleep(3)  # several redrive sweeps later, still exactly one reply each
    assert [len(fake_twilio.sent_to(c)) for c in customers] == [1] * len(customers)
