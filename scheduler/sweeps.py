"""Redrive: find work the broker lost and wake it again. Each query reads an index range,
bounded by ``limit``.

A wake-up the redrive sends is stamped on its row (``redriven_at``), and the next passes leave
the row alone while that wake-up is recent and newer than the reason the row needs work (the
pending message, the expired lease, the due attempt). So a backlog after an outage is woken
once, not once per pass; a row whose wake-up the broker lost again is re-woken after
``rewake_after``. Every wake-up may still duplicate one already queued: the claims it leads to
are conditional updates, so a duplicate (or a second beat) is a no-op.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Engine, and_, or_, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from conversations import webhook_outbox
from conversations.db import session_factory, transaction
from conversations.models import (
    PENDING_MESSAGE,
    Conversation,
    Message,
    OutboxRow,
    WebhookDelivery,
)
from conversations.states import ConversationStatus, OutboxStatus
from conversations.wakeup import Waker

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Window:
    now: datetime
    grace: timedelta  # leaves fresh rows to the wake-up their writer already sent
    rewake_after: timedelta

    def not_woken_since(
        self, redriven_at: InstrumentedAttribute[Any], reason_at: Any
    ) -> ColumnElement[bool]:
        """No wake-up from us since the row needed work, or ours is old enough to be lost."""
        return or_(
            redriven_at.is_(None),
            redriven_at < reason_at,
            redriven_at <= self.now - self.rewake_after,
        )


@dataclass(frozen=True, slots=True)
class RedriveWork:
    turns: list[uuid.UUID]
    deliveries: list[int]
    reconciles: list[int]
    wrap_ups: list[uuid.UUID]
    webhooks: list[int]

    def counts(self) -> dict[str, int]:
        return {
            "turns": len(self.turns),
            "deliveries": len(self.deliveries),
            "reconciles": len(self.reconciles),
            "wrap_ups": len(self.wrap_ups),
            "webhooks": len(self.webhooks),
        }


def conversations_to_wake(session: Session, w: Window, *, limit: int) -> list[uuid.UUID]:
    """Conversations with a pending message (or an opening to write) and no live turn."""
    c = Conversation
    expired_lease = and_(
        c.status == ConversationStatus.RUNNING,
        c.lease_expires_at < w.now,
        w.not_woken_since(c.redriven_at, c.lease_expires_at),
    )
    query = (
        select(c.id)
        .join(Message, Message.conversation_id == c.id)
        .where(
            PENDING_MESSAGE,
            or_(
                and_(
                    c.status == ConversationStatus.SUSPENDED,
                    Message.created_at <= w.now - w.grace,
                    w.not_woken_since(c.redriven_at, Message.created_at),
                ),
                expired_lease,
            ),
        )
        .distinct()
        .limit(limit)
    )
    found = list(session.scalars(query))
    # Outbound conversations whose opening the agent has yet to write (no inbound message).
    openings = (
        select(c.id)
        .where(
            c.wants_turn.is_(True),
            or_(
                and_(
                    c.status == ConversationStatus.SUSPENDED,
                    c.updated_at <= w.now - w.grace,
                    w.not_woken_since(c.redriven_at, c.updated_at),
                ),
                expired_lease,
            ),
        )
        .limit(limit)
    )
    return list(dict.fromkeys(found + list(session.scalars(openings))))


def outbox_to_send(session: Session, w: Window, *, limit: int) -> list[int]:
    o = OutboxRow
    query = (
        select(o.id)
        .where(
            o.status == OutboxStatus.PENDING,
            o.next_attempt_at <= w.now,
            o.updated_at <= w.now - w.grace,
            w.not_woken_since(o.redriven_at, o.next_attempt_at),
        )
        .order_by(o.next_attempt_at)
        .limit(limit)
    )
    return list(session.scalars(query))


def outbox_to_reconcile(session: Session, w: Window, *, after: timedelta, limit: int) -> list[int]:
    o = OutboxRow
    query = (
        select(o.id)
        .where(
            o.status == OutboxStatus.SENDING,
            o.updated_at <= w.now - after,
            w.not_woken_since(o.redriven_at, o.updated_at),
        )
        .order_by(o.updated_at)
        .limit(limit)
    )
    return list(session.scalars(query))


def conversations_to_wrap_up(session: Session, w: Window, *, limit: int) -> list[uuid.UUID]:
    c = Conversation
    query = (
        select(c.id)
        .where(
            c.status == ConversationStatus.FINISHED,
            c.wrapped_up_at.is_(None),
            c.finished_at <= w.now - w.grace,
            w.not_woken_since(c.redriven_at, c.finished_at),
        )
        .order_by(c.finished_at)
        .limit(limit)
    )
    return list(session.scalars(query))


def webhooks_to_send(
    session: Session, w: Window, *, stale_after: timedelta, limit: int
) -> list[int]:
    """Event deliveries first in line and due (or claimed by a worker that died), whose
    wake-up was lost or never sent (an event of a commit whose publish failed)."""
    d = WebhookDelivery
    heads = webhook_outbox.due_heads(
        session, now=w.now, stale_before=w.now - stale_after, limit=limit
    )
    if not heads:
        return []
    query = select(d.id).where(
        d.id.in_(heads),
        d.updated_at <= w.now - w.grace,
        w.not_woken_since(d.redriven_at, d.next_attempt_at),
    )
    return list(session.scalars(query))


def find_redrive_work(
    session: Session,
    w: Window,
    *,
    reconcile_after: timedelta,
    limit: int,
    webhook_stale_after: timedelta = timedelta(minutes=2),
) -> RedriveWork:
    return RedriveWork(
        turns=conversations_to_wake(session, w, limit=limit),
        deliveries=outbox_to_send(session, w, limit=limit),
        reconciles=outbox_to_reconcile(session, w, after=reconcile_after, limit=limit),
        wrap_ups=conversations_to_wrap_up(session, w, limit=limit),
        webhooks=webhooks_to_send(session, w, stale_after=webhook_stale_after, limit=limit),
    )


def redrive_once(
    engine: Engine,
    waker: Waker,
    w: Window,
    *,
    reconcile_after: timedelta,
    limit: int,
    webhook_stale_after: timedelta = timedelta(minutes=2),
) -> dict[str, int]:
    """Wake what the broker lost; stamp what was published, so later passes skip it."""
    with session_factory(engine)() as session:
        work = find_redrive_work(
            session,
            w,
            reconcile_after=reconcile_after,
            limit=limit,
            webhook_stale_after=webhook_stale_after,
        )
    woken_conversations = _published(waker.turn, work.turns) + _published(
        waker.wrap_up, work.wrap_ups
    )
    woken_rows = _published(waker.deliver, work.deliveries) + _published(
        waker.reconcile, work.reconciles
    )
    woken_webhooks = _published(waker.webhook, work.webhooks)
    # Most passes find nothing: no transaction then.
    if woken_conversations or woken_rows or woken_webhooks:
        with transaction(engine) as session:
            _stamp(session, Conversation, woken_conversations, w.now)
            _stamp(session, OutboxRow, woken_rows, w.now)
            _stamp(session, WebhookDelivery, woken_webhooks, w.now)
    counts = work.counts()
    if any(counts.values()):
        log.info("redrive: %s", counts)
    return counts


def _published(send: Callable[[Any], bool], ids: Iterable[Any]) -> list[Any]:
    return [i for i in ids if send(i)]


def _stamp(
    session: Session,
    model: type[Conversation | OutboxRow | WebhookDelivery],
    ids: Sequence[Any],
    now: datetime,
) -> None:
    if ids:
        session.execute(update(model).where(model.id.in_(ids)).values(redriven_at=now))
