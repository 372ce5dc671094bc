"""``POST /webhooks/chat``: verify the Standard Webhooks signature, read the JSON, one ingest.

Order matters: the signature headers are looked at before the body is read (an unsigned
request learns nothing else), the body is read under a size cap, and only a signed body is
parsed, so a 400 or a 422 is only ever said to whoever holds the secret.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from channels.chat.channel import ChatChannel
from channels.chat.inbound import ChatPost, read_post
from channels.webhook import accept, read_body, webhook_app
from conversations.errors import WebhookRejected
from conversations.standard_webhooks import missing_headers, verify

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

REFUSALS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Stored (accepted), or stored before (duplicate): the reply comes later.",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "status": {"type": "string", "enum": ["accepted", "duplicate"]},
                        "conversation_id": {"type": "string", "format": "uuid"},
                    },
                    "required": ["status", "conversation_id"],
                }
            }
        },
    },
    400: {"description": "Not a JSON object (or not UTF-8)."},
    403: {
        "description": "webhook-id, webhook-timestamp or webhook-signature missing, a "
        "signature that does not match CHAT_WEBHOOK_SECRET, or a timestamp outside 5 minutes."
    },
    413: {"description": "Over MAX_WEBHOOK_BYTES."},
    422: {"description": "A field missing or invalid (errors names each)."},
}
BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": ChatPost.model_json_schema()}},
    }
}


@router.post("/chat", responses=REFUSALS, openapi_extra=BODY, response_class=JSONResponse)
async def inbound_chat(request: Request) -> JSONResponse:
    app = webhook_app(request)
    settings = app.settings
    missing = missing_headers(request.headers)
    if missing:
        raise WebhookRejected(403, f"missing Standard Webhooks header(s): {', '.join(missing)}")
    body = await read_body(request, settings.max_webhook_bytes)
    webhook_id = verify(settings.chat_secret(), body, request.headers)
    post = read_post(body)
    message = ChatChannel(settings).parse(post, webhook_id)
    service = post.service or settings.default_service
    result = await run_in_threadpool(partial(accept, app, message, service=service))
    return JSONResponse(
        {
            "status": "duplicate" if result.duplicate else "accepted",
            # None: a replay of an erased customer's message, which concerns no one now.
            "conversation_id": str(result.conversation_id) if result.conversation_id else None,
        }
    )
