"""The dev sink: where replies go when a channel has no provider credentials.

Rows sent here are marked ``via_sink`` and shown by ``dormouse outbox`` and ``GET /v1/outbox``.
"""

from __future__ import annotations

from conversations.envelope import OutboundMessage, SendResult


def sink_send(message: OutboundMessage, provider_id: str | None = None) -> SendResult:
    return SendResult(
        provider_id=provider_id or f"devsink-{message.idempotency_key}", status="delivered"
    )
