"""Tombstones of erased customers' messages: a replayed webhook is a duplicate, not a
resurrection.

A captured provider webhook (Twilio's signature has no timestamp) replayed after the
customer's erasure would otherwise create the customer, the conversation and a reply
again. Erasure keeps the SHA-256 of each inbound message's channel and provider id, and
ingest answers a message whose digest is kept as a duplicate that concerns no one. Only
the digest is kept, never the id: nothing of the customer is left to read, and an id
cannot be found from it without already knowing it. Kept for good, like the provider's
capture of the webhook could be: one 64-character key per erased message.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from conversations import statements
from conversations.models import Conversation, ErasedProviderId, Message
from conversations.statements import dialect_insert
from conversations.states import Direction


def digest(channel: str, provider_id: str) -> str:
    return hashlib.sha256(f"{channel}\n{provider_id}".encode()).hexdigest()


def is_erased(session: Session, channel: str, provider_id: str) -> bool:
    """Whether this message belonged to a customer since erased (one primary-key read)."""
    found = session.connection().execute(
        statements.ERASED_DIGEST, {"digest": digest(channel, provider_id)}
    )
    return found.first() is not None


def bury(session: Session, customer_id: uuid.UUID, now: datetime) -> int:
    """Keep the digests of the customer's inbound messages, before they are deleted. The
    caller's unit of work commits them with the erasure."""
    rows = session.execute(
        select(Message.channel, Message.provider_id).where(
            Message.conversation_id.in_(
                select(Conversation.id).where(Conversation.customer_id == customer_id)
            ),
            Message.direction == Direction.INBOUND,
            Message.provider_id.is_not(None),
        )
    ).all()
    digests = sorted({digest(row.channel, row.provider_id) for row in rows})
    if digests:
        # DO NOTHING: two erasures of one customer at once both get here; one deletes.
        session.execute(
            dialect_insert(session, ErasedProviderId)
            .values([{"digest": d, "erased_at": now} for d in digests])
            .on_conflict_do_nothing(index_elements=["digest"])
        )
    return len(digests)
