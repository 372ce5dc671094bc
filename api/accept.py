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
    if result.needs_turn:  # a retried webhook still pending re-wakes: harmless, and helps
        app.waker.turn(result.conversation_id)
    for outbox_id in result.outbox_ids:
        app.waker.deliver(outbox_id)
    if result.finished:
        app.waker.wrap_up(result.conversation_id)
    return result
