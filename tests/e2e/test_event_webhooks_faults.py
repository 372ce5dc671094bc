"""Event webhooks when a worker dies mid-delivery: real API and worker processes, a real
receiver that verifies every signature. Each event arrives, in order, once by webhook-id."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.conftest import API_KEY
from tests.e2e.stack import Stack, wait_until
from tests.fakes.event_receiver import EventReceiver

pytestmark = pytest.mark.e2e

CUSTOMER = "+14155550188"


@pytest.fixture
def receiver() -> Iterator[EventReceiver]:
    server = EventReceiver(hang_seconds=30).start()
    yield server
    server.stop()


def test_kill_9_mid_delivery_each_event_arrives_in_order_once_by_webhook_id(
    make_stack: Callable[..., Stack], receiver: EventReceiver
) -> None:
    stack = make_stack(WEBHOOK_TIMEOUT="2").start(workers=0)
    added = httpx.post(
        stack.base + "/v1/webhooks",
        json={"url": receiver.url},
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    assert added.status_code == 201, added.text
    receiver.secrets.append(added.json()["secret"])
    receiver.answer_next("timeout")  # the first post hangs: its worker dies holding it

    stack.start_worker("doomed", pool="solo")
    assert stack.text("hello there", CUSTOMER).status_code == 200
    wait_until(lambda: receiver.posts, what="the first event to reach the receiver")
    stack.kill9("doomed")

    stack.start_worker("survivor")
    taken = receiver.wait_for(3, timeout=90)
    assert [p.body["type"] for p in taken][:3] == [
        "conversation.started",
        "message.received",
        "message.sent",
    ]
    ids = [p.webhook_id for p in taken]
    assert len(ids) == len(set(ids))
    # The event the dead worker was sending came again, the same event under the same id.
    first = [p for p in receiver.posts if p.webhook_id == taken[0].webhook_id]
    assert len(first) >= 2 and all(p.body == first[0].body for p in first)
