"""Twilio webhooks. Thin: verify on the raw request, parse, one ingest call, answer."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from channels.sms.channel import SmsChannel, route_sms
from channels.webhook import accept, public_url_for, read_body, webhook_app
from conversations.db import transaction
from conversations.errors import WebhookRejected
from conversations.ingest import IngestResult
from conversations.outbox import record_delivery_status
from conversations.types import utcnow
from conversations.wakeup import Produced, publish

router = APIRouter(prefix="/webhooks/twilio", tags=["webhooks"])

CONVERSATION_HEADER = "X-Dormouse-Conversation"
REPLY_HEADER = "X-Dormouse-Reply"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


async def _verified_form(request: Request, channel: SmsChannel) -> dict[str, str]:
    settings = webhook_app(request).settings
    if not request.headers.get("x-twilio-signature"):
        # Cheap and first: an unsigned request learns nothing about what we would accept.
        raise WebhookRejected(403, "missing X-Twilio-Signature header")
    raw = await read_body(request, settings.max_webhook_bytes)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise WebhookRejected(415, "expected application/x-www-form-urlencoded")
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(raw))
    except (UnicodeDecodeError, ValueError) as exc:
        raise WebhookRejected(400, f"malformed form body: {exc}") from None
    params = dict(pairs)
    channel.verify(public_url_for(request, settings), params, request.headers)
    return params


REFUSALS: dict[int | str, dict[str, Any]] = {
    400: {"description": "A form Twilio would not send (malformed, or a required field missing)."},
    403: {"description": "X-Twilio-Signature missing or not Twilio's for this URL."},
    413: {"description": "Over MAX_WEBHOOK_BYTES."},
    415: {"description": "Not application/x-www-form-urlencoded."},
}
TWIML: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Empty TwiML: the reply goes out later.",
        "content": {"application/xml": {}},
    }
}


@router.post("/sms", response_class=Response, responses={**TWIML, **REFUSALS})
async def inbound_sms(request: Request) -> Response:
    app = webhook_app(request)
    channel = SmsChannel(app.settings)
    params = await _verified_form(request, channel)
    message = channel.parse(params, request.headers)
    service, route = route_sms(app.settings, message.recipient)
    result = await run_in_threadpool(accept, app, message, service=service, route=route)
    return Response(EMPTY_TWIML, media_type="application/xml", headers=outcome_headers(result))


def outcome_headers(result: IngestResult) -> dict[str, str]:
    """What became of the message, for `dormouse simulate` (Twilio ignores them): its
    conversation, and whether a reply is coming (none after STOP or START, nor while held)."""
    coming = result.needs_turn or bool(result.outbox_ids)
    reply = "held" if result.held else "coming" if coming else "none"
    headers = {REPLY_HEADER: reply}
    if result.conversation_id is not None:
        headers[CONVERSATION_HEADER] = str(result.conversation_id)
    return headers


@router.post("/status", response_class=Response, responses={**TWIML, **REFUSALS})
async def delivery_status(request: Request) -> Response:
    app = webhook_app(request)
    channel = SmsChannel(app.settings)
    update = channel.parse_status(await _verified_form(request, channel))

    def record() -> None:
        with transaction(app.engine) as session:
            fresh = record_delivery_status(
                session,
                channel=channel.name,
                provider_id=update.provider_id,
                status=update.status,
                error_code=update.error_code,
                now=utcnow(),
            )
        if fresh:  # a message.delivery_updated event may be owed to webhook endpoints
            publish(app.waker, Produced.of(other_events=True))

    await run_in_threadpool(record)
    return Response(status_code=200)
