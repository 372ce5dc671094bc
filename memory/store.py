"""The memory store: what a customer's last two weeks leave for the agent.

Entries are summaries (from wrap-up) and facts (from the remember tool); the customer's own
messages stay in their conversations. Reads ignore anything older than the retention window
even before the purge deletes it, and are bounded: newest first, a row limit and a size
budget, through the (customer_id, created_at) index.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import bindparam, delete, select
from sqlalchemy.orm import Session

from conversations.db import rowcount
from conversations.models import Conversation, MemoryEntry
from conversations.states import ConversationStatus

MAX_ENTRIES = 50
BUDGET_CHARS = 4000
MAX_FACT_CHARS = 1000


class MemoryKind(StrEnum):
    SUMMARY = "summary"  # a finished conversation, written by its wrap-up
    FACT = "fact"  # something the agent was told to remember (the remember tool)


def remember(
    session: Session,
    *,
    customer_id: uuid.UUID,
    conversation_id: uuid.UUID | None,
    kind: MemoryKind,
    text: str,
    now: datetime,
) -> None:
    """Add one entry to the customer's memory (the caller's transaction commits it)."""
    if kind is MemoryKind.FACT:
        text = text[:MAX_FACT_CHARS]
    session.add(
        MemoryEntry(
            customer_id=customer_id,
            conversation_id=conversation_id,
            kind=kind,
            text=text,
            created_at=now,
        )
    )


_entries = MemoryEntry.__table__
# Built once, read as rows: a full window is 50 entries on every turn, and as mapped objects
# they cost more than the rest of the turn's reads together.
RECENT_ENTRIES = (
    select(_entries.c.kind, _entries.c.text, _entries.c.created_at, _entries.c.conversation_id)
    .where(
        _entries.c.customer_id == bindparam("customer_id"),
        _entries.c.created_at >= bindparam("since"),
    )
    .order_by(_entries.c.created_at.desc())  # the index order: no sort
    .limit(bindparam("limit"))
)


@dataclass(frozen=True, slots=True)
class Memory:
    kind: str
    text: str
    created_at: datetime
    conversation_id: uuid.UUID | None


def recall(
    session: Session,
    customer_id: uuid.UUID,
    *,
    now: datetime,
    retention: timedelta,
    limit: int = MAX_ENTRIES,
    budget: int = BUDGET_CHARS,
) -> list[Memory]:
    """Entries in the window, newest first, cut at ``budget`` characters."""
    rows = session.execute(
        RECENT_ENTRIES, {"customer_id": customer_id, "since": now - retention, "limit": limit}
    )
    out: list[Memory] = []
    used = 0
    for row in rows:
        used += len(row.text)
        if used > budget and out:
            break
        out.append(Memory(*row))
    return out


@dataclass(frozen=True, slots=True)
class Purged:
    memory_entries: int
    conversations: int


def purge_expired(session: Session, *, now: datetime, retention: timedelta, batch: int) -> Purged:
    """Delete one batch of what fell out of the window: memory entries, and finished
    conversations (with their messages, by cascade). Open conversations are kept whole."""
    cutoff = now - retention
    old_entries = select(MemoryEntry.id).where(MemoryEntry.created_at < cutoff).limit(batch)
    entries = rowcount(
        session.execute(
            delete(MemoryEntry)
            .where(MemoryEntry.id.in_(old_entries.scalar_subquery()))
            .execution_options(synchronize_session=False)
        )
    )
    old_conversations = (
        select(Conversation.id)
        .where(
            Conversation.status == ConversationStatus.FINISHED,
            Conversation.finished_at < cutoff,
        )
        .limit(batch)
    )
    conversations = rowcount(
        session.execute(
            delete(Conversation)
            .where(Conversation.id.in_(old_conversations.scalar_subquery()))
            .execution_options(synchronize_session=False)
        )
    )
    return Purged(entries, conversations)
