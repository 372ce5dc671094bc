"""One-time tokens of signed webhooks: a captured request cannot be replayed."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.orm import Session

from conversations.db import rowcount
from conversations.errors import WebhookRejected
from conversations.models import WebhookNonce
from conversations.statements import dialect_insert


def use_once(session: Session, source: str, token: str, now: datetime) -> None:
    """Record ``token``; 403 if it was seen before. Commits with the caller's unit of work,
    so a request that fails leaves its token unused for the provider's retry."""
    stored = session.scalar(
        dialect_insert(session, WebhookNonce)
        .values(source=source, token=token, seen_at=now)
        .on_conflict_do_nothing(index_elements=["source", "token"])
        .returning(WebhookNonce.token)
    )
    if stored is None:
        raise WebhookRejected(403, f"{source} token already used: replay refused")


def purge_before(session: Session, cutoff: datetime) -> int:
    """Forget tokens older than any timestamp still accepted: that check refuses them now.
    Holds one purge interval of signed webhooks at most, through the seen_at index."""
    result = session.execute(
        delete(WebhookNonce)
        .where(WebhookNonce.seen_at < cutoff)
        .execution_options(synchronize_session=False)
    )
    return rowcount(result)
