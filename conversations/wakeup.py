"""Wake-ups: the only thing the broker carries. Sent by task name, so that the API and the
store never import the worker package.

A wake-up may be lost, duplicated or late; the redrive sweep and the conditional claims make
every one of those harmless. Sending one never raises: with the broker down the message is
already committed, and the redrive finds it once the broker is back.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

from celery import Celery

from conversations.broker import celery_config
from conversations.hints import Hints
from conversations.settings import Settings, get_settings

log = logging.getLogger(__name__)

TURN_TASK = "dormouse.turn"
DELIVER_TASK = "dormouse.deliver"
RECONCILE_TASK = "dormouse.reconcile"
REDRIVE_TASK = "dormouse.redrive"
WRAPUP_TASK = "dormouse.wrap_up"
TIMEOUT_SWEEP_TASK = "dormouse.sweep_timeouts"
RECOMPUTE_TASK = "dormouse.recompute_timeouts"
PURGE_TASK = "dormouse.purge_memory"
WEBHOOK_TASK = "dormouse.webhook"  # one event delivery (a retry, a replay, the redrive)
WEBHOOKS_TASK = "dormouse.webhooks"  # every due delivery of some conversations (or all)

TURN_QUEUE = "dormouse.turns"
DELIVER_QUEUE = "dormouse.deliveries"
SWEEP_QUEUE = "dormouse.sweeps"

# Fail fast when the broker is down: the caller has already committed, redrive recovers.
PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2}


class Waker(Protocol):
    def turn(self, conversation_id: uuid.UUID) -> bool: ...
    def deliver(self, outbox_id: int, delay: float = 0) -> bool: ...
    def reconcile(self, outbox_id: int, delay: float = 0) -> bool: ...
    def wrap_up(self, conversation_id: uuid.UUID) -> bool: ...
    def recompute(self, service: str, channel: str) -> bool: ...
    def changed(self, conversation_ids: Sequence[uuid.UUID]) -> bool: ...
    def webhook(self, delivery_id: int, delay: float = 0) -> bool: ...
    def webhooks(self, conversation_ids: Sequence[uuid.UUID | None] | None = None) -> bool: ...


class CeleryWaker:
    """Publishes wake-ups through a Celery app (the worker's own, or a bare one by URL)."""

    def __init__(self, app: Celery | None = None, settings: Settings | None = None) -> None:
        self._app = app
        self._settings = settings

    @cached_property
    def app(self) -> Celery:
        if self._app is not None:
            return self._app
        app = Celery("dormouse-publisher")
        app.conf.update(celery_config(self._settings or get_settings()))
        return app

    def turn(self, conversation_id: uuid.UUID) -> bool:
        return self._send(TURN_TASK, [str(conversation_id)], TURN_QUEUE)

    def deliver(self, outbox_id: int, delay: float = 0) -> bool:
        return self._send(DELIVER_TASK, [outbox_id], DELIVER_QUEUE, delay)

    def reconcile(self, outbox_id: int, delay: float = 0) -> bool:
        return self._send(RECONCILE_TASK, [outbox_id], DELIVER_QUEUE, delay)

    def wrap_up(self, conversation_id: uuid.UUID) -> bool:
        return self._send(WRAPUP_TASK, [str(conversation_id)], SWEEP_QUEUE)

    def recompute(self, service: str, channel: str) -> bool:
        return self._send(RECOMPUTE_TASK, [service, channel], SWEEP_QUEUE)

    def webhook(self, delivery_id: int, delay: float = 0) -> bool:
        return self._send(WEBHOOK_TASK, [delivery_id], DELIVER_QUEUE, delay)

    def webhooks(self, conversation_ids: Sequence[uuid.UUID | None] | None = None) -> bool:
        """Send what is due for these conversations (None in the list: events about no
        conversation, customer.erased); without a list, everything due."""
        keys = None if conversation_ids is None else [_key(c) for c in conversation_ids]
        return self._send(WEBHOOKS_TASK, [keys], DELIVER_QUEUE)

    @cached_property
    def _hints(self) -> Hints:
        return Hints((self._settings or get_settings()).effective_broker_url)

    def changed(self, conversation_ids: Sequence[uuid.UUID]) -> bool:
        return self._hints.send(conversation_ids)

    def _send(self, name: str, args: list[object], queue: str, delay: float = 0) -> bool:
        # A delay is a hint only (kept far below the visibility timeout by the caller): the
        # redrive sweep, not the countdown, is what guarantees the work happens.
        try:
            self.app.send_task(
                name,
                args=args,
                queue=queue,
                countdown=delay or None,
                retry=True,
                retry_policy=PUBLISH_RETRY_POLICY,
            )
        except Exception as exc:  # kombu raises several families; all mean "not published"
            log.warning("wake-up %s%s not published (redrive will recover): %s", name, args, exc)
            return False
        return True


def _key(conversation_id: uuid.UUID | None) -> str | None:
    return None if conversation_id is None else str(conversation_id)


@dataclass(frozen=True, slots=True)
class Produced:
    """What a committed unit of work left for others: the turns, deliveries and wrap-ups it
    made due. Returned by whatever commits, published by ``publish`` once committed."""

    turns: tuple[uuid.UUID, ...] = ()
    deliveries: tuple[int, ...] = ()
    wrap_ups: tuple[uuid.UUID, ...] = ()
    # Conversations with new events (conversations/events.py): live streams are told, and
    # the event webhooks they may owe are sent.
    changed: tuple[uuid.UUID, ...] = ()
    # Events outside any conversation (customer.erased) or from a path that does not know
    # its conversation: every due webhook delivery is sent.
    other_events: bool = False

    @classmethod
    def of(
        cls,
        *,
        turns: Iterable[uuid.UUID | None] = (),
        deliveries: Iterable[int | None] = (),
        wrap_ups: Iterable[uuid.UUID | None] = (),
        changed: Iterable[uuid.UUID | None] = (),
        other_events: bool = False,
    ) -> Produced:
        """Build one, leaving out the Nones a caller's optional results bring."""
        return cls(
            turns=tuple(t for t in turns if t is not None),
            deliveries=tuple(d for d in deliveries if d is not None),
            wrap_ups=tuple(w for w in wrap_ups if w is not None),
            changed=tuple(dict.fromkeys(c for c in changed if c is not None)),
            other_events=other_events,
        )


def publish(waker: Waker, produced: Produced) -> bool:
    """The one place a commit's consequences leave the process. Never raises; False when a
    wake-up was not published (the redrive sweep will find its work)."""
    sent = [waker.deliver(outbox_id) for outbox_id in produced.deliveries]
    sent += [waker.turn(conversation_id) for conversation_id in produced.turns]
    sent += [waker.wrap_up(conversation_id) for conversation_id in produced.wrap_ups]
    if produced.changed:
        waker.changed(produced.changed)  # a hint: a lost one delays a stream by one poll
    # Event webhooks: the deliveries were committed with the events; a lost wake-up is found
    # by the redrive sweep. Sent whether or not any endpoint exists: knowing would cost the
    # committing transaction a read it otherwise skips (benchmarks/README.md, Event webhooks).
    if produced.other_events:
        sent.append(waker.webhooks(None))
    elif produced.changed:
        sent.append(waker.webhooks(list(produced.changed)))
    return all(sent)
