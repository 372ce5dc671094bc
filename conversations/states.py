"""Status names. They are external contracts (API, CLI, docs): add, never rename."""

from __future__ import annotations

from enum import StrEnum


class ConversationStatus(StrEnum):
    SUSPENDED = "suspended"
    RUNNING = "running"
    HANDOFF = "handoff"
    # Stored but not answered until an operator releases it: mail that failed authentication,
    # or a sender or conversation over a spending limit (``held_reason`` says which).
    HELD = "held"
    FINISHED = "finished"


OPEN_STATUSES = (
    ConversationStatus.SUSPENDED,
    ConversationStatus.RUNNING,
    ConversationStatus.HANDOFF,
    ConversationStatus.HELD,
)


class FinishReason(StrEnum):
    TIMEOUT = "timeout"
    AGENT = "agent"
    API = "api"
    OPERATOR = "operator"
    OPT_OUT = "opt_out"


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class Role(StrEnum):
    CUSTOMER = "customer"
    AGENT = "agent"
    OPERATOR = "operator"
    API = "api"  # written by the business's developer through the outbound API
    SYSTEM = "system"  # an automatic message (auto-reply, bounce): recorded, never answered


class InboundState(StrEnum):
    PENDING = "pending"  # committed, waiting for a turn
    DONE = "done"  # answered by a committed turn
    # Arrived while a human or a hold has the conversation: shown, not answered (a release
    # of a held conversation makes these pending again).
    HELD = "held"
    QUARANTINED = "quarantined"  # its turn failed max_turn_attempts times
    IGNORED = "ignored"  # automatic (auto-reply, bounce): answering it could start a mail loop


class OutboxStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"  # handed to the provider; outcome unknown until it answers
    SENT = "sent"
    FAILED = "failed"


class EventDeliveryStatus(StrEnum):
    """Of a ``webhook_deliveries`` row: one event owed to one endpoint (the event outbox)."""

    PENDING = "pending"
    SENDING = "sending"  # claimed by a delivery worker; taken again once stale
    DELIVERED = "delivered"
    FAILED = "failed"  # 410 Gone, or the retry schedule ran out


UNSETTLED_EVENT_DELIVERIES = (EventDeliveryStatus.PENDING, EventDeliveryStatus.SENDING)


# A status never moves backwards: a late "sent" callback does not overwrite "delivered".
DELIVERY_RANK: dict[str, int] = {
    "pending": 0,
    "accepted": 1,
    "scheduled": 1,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "read": 5,
    "undelivered": 4,
    "failed": 4,
}
