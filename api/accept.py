"""Accept an inbound message: commit it, then publish the wake-ups it needs.

Both are blocking calls, made in one trip to the threadpool rather than one each: on a busy
API process a thread hop costs about as much as a statement.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

from api.deps import AppState
from conversations.envelope import InboundMessage
from conversations.ingest import IngestResult, ingest_committed
from conversations.wakeup import Produced, publish


def accept(
    app: AppState,
    message: InboundMessage,
    *,
    service: str,
    before: Callable[[Session], None] | None = None,
) -> IngestResult:
    """Commit ``message`` (``before`` runs first in its transaction), then wake its turn,
    the deliveries and the wrap-up it caused. Returns once committed: a wake-up that fails
    to publish is recovered by the redrive sweep."""
    settings = app.settings
    result = ingest_committed(
        app.engine,
        message,
        service=service,
        defaults=settings.default_policies(),
        help_text=settings.help_text,
        before=before,
    )
    if result.conversation_id is None:
        return result
    # A retried webhook still pending re-wakes its turn: harmless, and it helps.
    publish(
        app.waker,
        Produced.of(
            turns=[result.conversation_id] if result.needs_turn else [],
            deliveries=result.outbox_ids,
            wrap_ups=[result.conversation_id] if result.finished else [],
        ),
    )
    return result
