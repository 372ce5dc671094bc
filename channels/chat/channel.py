"""Chat: Standard Webhooks-signed JSON in, signed JSON callbacks out (or none: the live API).

A reply is POSTed to ``CHAT_CALLBACK_URL`` with a webhook-id derived from its outbox row, so
every retry of one reply carries the same id and the receiver drops the copies. Without a
callback URL a chat platform or a website reads replies from the API instead, so a reply is
sent once it is stored: recorded as sent, never as the dev sink's "not really delivered".
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from functools import cached_property

import httpx

from channels.base import Channel
from channels.chat.inbound import ChatPost
from conversations import outbound_http
from conversations.channel_names import MAX_TEXT
from conversations.envelope import InboundMessage, OutboundMessage, SendResult
from conversations.errors import (
    AmbiguousProviderError,
    PermanentProviderError,
    TransientProviderError,
)
from conversations.settings import Settings
from conversations.standard_webhooks import sign

# Asked to wait (408) or slow down (429): the receiver says it did not take the message.
RETRY_LATER = {408, 429}


class ChatChannel(Channel):
    name = "chat"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    # --- inbound -------------------------------------------------------------------------

    def parse(self, post: ChatPost, webhook_id: str) -> InboundMessage:
        return InboundMessage(
            channel=self.name,
            # The body's id names the message at the platform; the webhook-id only this
            # delivery of it, and a platform may send one message under two of those.
            provider_id=post.id,
            sender=post.user_id,
            text=post.text,
            idempotency_token=webhook_id[:128],
            metadata={"metadata": post.metadata} if post.metadata is not None else {},
        )

    # --- outbound ------------------------------------------------------------------------

    @property
    def can_send(self) -> bool:
        # Always: without a callback URL, storing the reply is delivering it (the live API
        # serves it). The dev sink is for channels that lack credentials, which chat never does.
        return True

    @cached_property
    def client(self) -> httpx.Client:
        # One pool per channel instance (the registry keeps one per process): a delivery
        # reuses the open connection to the receiver instead of a TLS handshake each.
        # Through outbound_http, as every POST to a URL someone gave: vetted addresses only.
        return outbound_http.client(
            allow_private=self.settings.allow_private_targets,
            timeout=self.settings.chat_http_timeout,
            headers={"content-type": "application/json", "user-agent": "dormouse-chat"},
        )

    def callback_body(self, message: OutboundMessage) -> str:
        return json.dumps(
            {
                "type": "message",
                "id": callback_id(message.idempotency_key),
                "conversation_id": message.conversation_id,
                "service": message.service,
                "user_id": message.to,
                "text": message.text,
            },
            ensure_ascii=False,
        )

    def send(self, message: OutboundMessage) -> SendResult:
        webhook_id = callback_id(message.idempotency_key)
        url = self.settings.chat_callback_url
        if not url:
            return SendResult(provider_id=webhook_id, status="sent")
        body = self.callback_body(message)
        # Signed at each attempt: the timestamp must be fresh, the id stays the row's.
        headers = sign(self.settings.chat_secret(), webhook_id, body)
        try:
            response = self.client.post(url, content=body.encode(), headers=headers)
        except outbound_http.Unresolvable as exc:  # DNS may be back on the next attempt
            raise TransientProviderError(f"CHAT_CALLBACK_URL: {exc}") from exc
        except outbound_http.TargetRefused as exc:  # nothing was sent, nor will be
            raise PermanentProviderError(f"CHAT_CALLBACK_URL: {exc}") from exc
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise TransientProviderError(f"no connection to CHAT_CALLBACK_URL: {exc!r}") from exc
        except httpx.TransportError as exc:
            # Read timeout, connection reset after the request went out: it may have arrived.
            raise AmbiguousProviderError(f"no answer from CHAT_CALLBACK_URL: {exc!r}") from exc
        status = response.status_code
        if 200 <= status < 300:
            return SendResult(provider_id=webhook_id, status="sent")
        said = f"CHAT_CALLBACK_URL answered {status}: {response.text[:200]}"
        if status in RETRY_LATER:
            raise TransientProviderError(said, status)
        if status >= 500:
            # It may have handled the message before failing: reconcile, then the same id again.
            raise AmbiguousProviderError(said, status)
        if 300 <= status < 400:
            where = response.headers.get("location", "?")
            said = f"{said} (a redirect to {where}: set CHAT_CALLBACK_URL to the final URL)"
        raise PermanentProviderError(said, status)

    def find_sent(self, message: OutboundMessage, since: datetime) -> list[SendResult]:
        # A receiver cannot be asked what it got. Reconcile then posts again with the same
        # webhook-id, which Standard Webhooks receivers dedupe on: a copy they can recognize
        # rather than a lost reply.
        return []

    def shape(self, text: str) -> str:
        # Chat windows render markdown; only runs of blank lines and the length are trimmed.
        text = re.sub(r"\n{3,}", "\n\n", text).strip()
        limit = MAX_TEXT["chat"]
        return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def callback_id(idempotency_key: str) -> str:
    """The webhook-id of one outbox row's callback: the same on every retry of it, so the
    receiver can drop a copy (a resend after a timeout). A hash, not the key itself, which
    is ours to change."""
    return "msg_" + hashlib.sha256(f"dormouse-chat:{idempotency_key}".encode()).hexdigest()[:32]
