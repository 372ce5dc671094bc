"""What every channel's webhook router stands on: the running app, the raw body, ``accept``.

A channel owns its inbound router (as Rasa's input channels own their blueprints), so the
API only mounts what the registry lists. The routers may not import ``api/`` (it imports
them), so the little they need of the running app is this ``WebhookApp`` protocol, which the
API's state satisfies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, cast

from fastapi import Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from conversations.envelope import InboundMessage
from conversations.errors import WebhookRejected
from conversations.ingest import IngestResult, Route, ingest_committed
from conversations.settings import Settings
from conversations.spending import limits_for
from conversations.wakeup import Produced, Waker, publish


class WebhookApp(Protocol):
    @property
    def settings(self) -> Settings: ...

    @property
    def engine(self) -> Engine: ...

    @property
    def waker(self) -> Waker: ...


def webhook_app(request: Request) -> WebhookApp:
    return cast(WebhookApp, request.app.state.dormouse)


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing (413) anything over ``limit`` before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise WebhookRejected(400, "Content-Length is not a number")
        if int(declared) > limit:
            raise WebhookRejected(413, f"body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise WebhookRejected(413, f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def public_url_for(request: Request, settings: Settings) -> str:
    """The URL the provider signed: PUBLIC_URL + path (+ query), not what a proxy shows us."""
    url = settings.public_url.rstrip("/") + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    return url


def accept(
    app: WebhookApp,
    message: InboundMessage,
    *,
    service: str,
    before: Callable[[Session], None] | None = None,
    route: Route | None = None,
) -> IngestResult:
    """Commit ``message`` (``before`` runs first in its transaction), then wake its turn,
    the deliveries and the wrap-up it caused. Returns once committed: a wake-up that fails
    to publish is recovered by the redrive sweep.

    Both are blocking calls, made in one trip to the threadpool rather than one each: on a
    busy API process a thread hop costs about as much as a statement.
    """
    settings = app.settings
    result = ingest_committed(
        app.engine,
        message,
        service=service,
        defaults=settings.default_policies(),
        help_text=settings.help_text,
        before=before,
        route=route,
        limits=limits_for(settings),
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
            changed=[] if result.duplicate else [result.conversation_id],
        ),
    )
    return result
