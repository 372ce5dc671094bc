"""Statements of a turn, built once at import and executed with bound parameters.

In a worker profile, building these statements on every call and running them through the
ORM's bulk-update path took about a quarter of the worker's CPU; prebuilt on the tables
they keep their cache keys and skip the ORM. Results come back as rows, not mapped objects:
nothing here needs an identity map. Unlike ORM statements they do not autoflush the session:
a caller that added mapped objects must flush before running one of these.
"""

from __future__ import annotations

from sqlalchemy import and_, bindparam, exists, func, or_, select, update

from conversations.models import PENDING_MESSAGE as _pending
from conversations.statements import LEASE_HELD, conversations, customers, messages
from conversations.states import ConversationStatus, InboundState, Role

HAS_WORK = or_(
    conversations.c.wants_turn.is_(True),
    exists().where(messages.c.conversation_id == conversations.c.id, _pending),
)

HAS_PENDING = select(conversations.c.id).where(
    conversations.c.id == bindparam("conversation_id"), HAS_WORK
)

# Take the lease if there is work and nobody holds a live one; returns the attempt count.
CLAIM = (
    update(conversations)
    .where(
        conversations.c.id == bindparam("conversation_id"),
        HAS_WORK,
        or_(
            conversations.c.status == ConversationStatus.SUSPENDED,
            and_(
                conversations.c.status == ConversationStatus.RUNNING,
                conversations.c.lease_expires_at < bindparam("now"),
            ),
        ),
    )
    .values(
        status=ConversationStatus.RUNNING,
        lease_token=bindparam("token"),
        lease_expires_at=bindparam("lease_until"),
        claim_attempts=conversations.c.claim_attempts + 1,
        updated_at=bindparam("now"),
    )
    .returning(conversations.c.claim_attempts)
)

# What a turn reads of its conversation and customer.
CONVERSATION_FOR_TURN = (
    select(
        conversations.c.id,
        conversations.c.customer_id,
        conversations.c.service,
        conversations.c.channel,
        conversations.c.address,
        conversations.c.turn_count,
        conversations.c.inbound_count,
        conversations.c.context,
        conversations.c.wants_turn,
        conversations.c.timeout_override_set,
        conversations.c.timeout_override_seconds,
        customers.c.name.label("customer_name"),
        customers.c.attributes.label("customer_attributes"),
    )
    .join_from(conversations, customers, customers.c.id == conversations.c.customer_id)
    .where(conversations.c.id == bindparam("conversation_id"))
)

_view = (
    messages.c.id,
    messages.c.direction,
    messages.c.role,
    messages.c.channel,
    messages.c.body,
    messages.c.created_at,
)
_of_conversation = messages.c.conversation_id == bindparam("conversation_id")
# Automatic mail (auto-replies, bounces) is recorded for people, never shown to the agent.
_shown = messages.c.role != Role.SYSTEM

PENDING_BATCH = (
    select(*_view)
    .where(_of_conversation, _pending)
    .order_by(messages.c.id)
    .limit(bindparam("limit"))
)
# Messages that arrived while a turn ran (double texting, agent/interrupts.py).
_after = messages.c.id > bindparam("after")
NEWEST_PENDING_AFTER = select(func.max(messages.c.id)).where(_of_conversation, _pending, _after)
PENDING_THROUGH = PENDING_BATCH.where(_after, messages.c.id <= bindparam("through"))
HISTORY = (
    select(*_view)
    .where(_of_conversation, _shown)
    .order_by(messages.c.id.desc())
    .limit(bindparam("limit"))
)
# Everything but the messages waiting for a turn: a reply committed after the customer's next
# message arrived (double texting, coalesced) is still history, before that message.
HISTORY_SETTLED = HISTORY.where(or_(messages.c.inbound_state.is_(None), ~_pending))
OPENING_BEFORE = (
    select(*_view)
    .where(_of_conversation, _shown, messages.c.id < bindparam("before"))
    .order_by(messages.c.id)
    .limit(bindparam("limit"))
)

# The commit's fencing update: takes the row lock, applies only if the lease is still ours.
# The deadline columns and the outcome's come as parameters.
COMMIT_TURN = (
    update(conversations)
    .where(LEASE_HELD)
    .values(
        lease_token=None,
        lease_expires_at=None,
        claim_attempts=0,
        turn_count=conversations.c.turn_count + 1,
        last_error=None,
        wants_turn=False,
    )
)

MARK_HANDLED = (
    update(messages)
    .where(
        messages.c.id.in_(bindparam("ids", expanding=True)),
        _pending,
    )
    .values(inbound_state=InboundState.DONE)
)

# Delivery: a due pending row becomes ``sending`` before the provider call.
