"""Statements of a delivery, built once at import (see workers/turn_statements.py for why)."""

from __future__ import annotations

from sqlalchemy import bindparam, select, text, update

from conversations.models import DeliveryEvent
from conversations.statements import messages, outbox
from conversations.states import OutboxStatus

delivery_events = DeliveryEvent.__table__

CLAIMED_COLUMNS = (
    outbox.c.id,
    outbox.c.message_id,
    outbox.c.conversation_id,
    outbox.c.channel,
    outbox.c.to_address,
    outbox.c.body,
    outbox.c.attempts,
    outbox.c.idempotency_key,
    outbox.c.via_sink,
    outbox.c.last_error,
    outbox.c.sending_started_at,
    outbox.c.created_at,
)
CLAIM_FOR_SEND = (
    update(outbox)
    .where(
        outbox.c.id == bindparam("outbox_id"),
        outbox.c.status == OutboxStatus.PENDING,
        outbox.c.next_attempt_at <= bindparam("now"),
    )
    .values(
        status=OutboxStatus.SENDING,
        attempts=outbox.c.attempts + 1,
        sending_started_at=bindparam("now"),
        updated_at=bindparam("now"),
    )
    .returning(*CLAIMED_COLUMNS)
)
CLAIM_FOR_RECONCILE = (
    update(outbox)
    .where(
        outbox.c.id == bindparam("outbox_id"),
        outbox.c.status == OutboxStatus.SENDING,
        outbox.c.updated_at <= bindparam("stale_before"),
    )
    .values(updated_at=bindparam("now"))
    .returning(*CLAIMED_COLUMNS)
)

# provider_id, via_sink and updated_at come as parameters.
MARK_SENT = (
    update(outbox)
    .where(outbox.c.id == bindparam("outbox_id"), outbox.c.status == OutboxStatus.SENDING)
    .values(status=OutboxStatus.SENT, last_error=None)
)

DELIVERY_STATUSES = select(delivery_events.c.status).where(
    delivery_events.c.channel == bindparam("channel"),
    delivery_events.c.provider_id == bindparam("provider_id"),
)
# provider_id and delivery_status come as parameters.
SET_MESSAGE_DELIVERY = update(messages).where(messages.c.id == bindparam("message_id"))
ADVISORY_XACT_LOCK = text("SELECT pg_advisory_xact_lock(hashtext(:k))")
