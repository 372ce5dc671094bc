"""Counts every webhook post by channel and by how it was answered.

An ASGI wrapper rather than counters in each route: every refusal (a bad signature in the
route, a 503 from the database handler, a 422 from validation) is counted the same way,
from the status the provider actually got, and a new channel's router is counted without
touching it. Pure ASGI, like the API gate: the busiest routes pay one dict lookup.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conversations.metrics import WEBHOOKS_ACCEPTED, WEBHOOKS_REJECTED, webhook_reason


class WebhookMeter:
    def __init__(self, app: ASGIApp, channels: Mapping[str, str]) -> None:
        self.app, self.channels = app, channels

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        channel = self.channels.get(scope["path"]) if scope["type"] == "http" else None
        if channel is None:
            await self.app(scope, receive, send)
            return
        answered: list[int] = []

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                answered.append(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            # No answer at all (the app raised): the server answers 500.
            status = answered[0] if answered else 500
            if status < 400:
                WEBHOOKS_ACCEPTED.labels(channel).inc()
            else:
                WEBHOOKS_REJECTED.labels(channel, webhook_reason(status)).inc()
