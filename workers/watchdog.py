"""A consumer step that notices when the broker channel stopped consuming, and reconnects.

Found by the fault suite (celery 5.7, kombu 5.7, Redis): when Redis dies while every pool
slot is busy, no BRPOP is outstanding, so the consumer does not notice the loss; the turns
then finish while Redis is down, their late acks fail ("Couldn't ack", logged and swallowed),
and the failed deliveries stay in kombu's QoS. The channel believes its prefetch window is
full and never asks Redis for work again: the worker lives, idle, while wake-ups pile up.

The step compares, every few seconds, the deliveries the channel still counts against its
prefetch window with the requests Celery still holds. More deliveries than requests twice in
a row means acks were lost: it raises a connection error inside the event loop, and Celery's
own reconnect builds a fresh connection, channel and QoS (re-queueing the ghost deliveries,
which the lease and fencing token make harmless to run again).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import bootsteps
from celery.worker import state

from conversations.errors import DormouseError

log = logging.getLogger(__name__)

CHECK_EVERY = 5.0


class ConsumerWedged(DormouseError, OSError):
    """An OSError so the event loop propagates it as a connection error on every transport."""


def ghost_deliveries(qos: Any) -> int:
    """Deliveries the channel counts against its window that no held request accounts for."""
    delivered = getattr(qos, "_delivered", None)
    if delivered is None:  # not a virtual transport (AMQP acks differently)
        return 0
    outstanding = len(delivered) - len(getattr(qos, "_dirty", ()))
    held = set(state.reserved_requests) | set(state.active_requests)
    held |= set(state.scheduled_requests)
    return max(0, outstanding - len(held))


class WedgedChannelWatch(bootsteps.StartStopStep):
    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.timer_ref: Any = None
        self.strikes = 0

    def start(self, c: Any) -> None:
        self.strikes = 0
        self.timer_ref = c.timer.call_repeatedly(CHECK_EVERY, self.check, (c,), priority=10)

    def stop(self, c: Any) -> None:
        if self.timer_ref is not None:
            self.timer_ref.cancel()
            self.timer_ref = None

    def check(self, c: Any) -> None:
        channel = getattr(c.task_consumer, "channel", None)
        ghosts = ghost_deliveries(getattr(channel, "qos", None))
        self.strikes = self.strikes + 1 if ghosts else 0
        if self.strikes >= 2:
            self.strikes = 0
            log.error(
                "the broker channel holds %d delivery(ies) whose acks were lost and stopped "
                "consuming; reconnecting",
                ghosts,
            )
            raise ConsumerWedged(f"{ghosts} unacknowledged deliveries with no task")
