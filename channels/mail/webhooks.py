"""The inbound email webhook: authenticate, find the raw MIME, parse, one ingest call.

Answers 4xx naming the problem for anything it refuses and never stores half a message;
an automatic mail (auto-reply, bounce) answers 200 so the provider does not retry it.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from channels.mail.authentication import hold_unless_authenticated
from channels.mail.inbound import check_secret, envelope_recipients, read_post, verify_mailgun
from channels.mail.parse import parse_email, recipients
from channels.webhook import accept, read_body, webhook_app
from conversations.errors import WebhookRejected
from conversations.ingest import is_stored
from conversations.nonces import use_once
from conversations.types import utcnow

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


REFUSALS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No credentials: EMAIL_INBOUND_SECRET as basic password or bearer."},
    403: {"description": "Wrong credentials, a bad Mailgun signature or a replayed token."},
    400: {
        "description": "Not a readable email (no From, no header fields, broken MIME), or "
        "MIME parts nested deeper than EMAIL_MAX_DEPTH."
    },
    413: {"description": "Over EMAIL_MAX_BYTES, or more than EMAIL_MAX_PARTS MIME parts."},
    415: {"description": "A content type other than message/rfc822 or a provider's form."},
}


@router.post("/email", responses=REFUSALS)
# Mailgun posts the raw message only to a URL ending in "mime".
@router.post("/email/mime", responses=REFUSALS)
async def inbound_email(request: Request) -> JSONResponse:
    app = webhook_app(request)
    settings = app.settings
    check_secret(request.headers, settings.email_secret())
    body = await read_body(request, settings.email_max_bytes)
    limits = {"max_parts": settings.email_max_parts, "max_depth": settings.email_max_depth}
    post = read_post(request.headers.get("content-type", ""), body, **limits)
    message = await run_in_threadpool(partial(parse_email, post.raw, **limits))
    message = hold_unless_authenticated(message, post, settings)
    before = None
    if settings.mailgun_signing_key:
        # With the key set, only signed Mailgun posts are taken: the key is meant to close
        # the door, not to be walked around with another shape of post.
        if post.source != "mailgun":
            raise WebhookRejected(403, "MAILGUN_SIGNING_KEY is set: only signed Mailgun posts")
        token = verify_mailgun(
            post.fields, settings.mailgun_signing_key, max_age=settings.mailgun_max_age
        )

        def before(session: Session) -> None:
            # A retry of a message already stored answers "duplicate", like any retried
            # webhook; only a token carrying a new message must be unused.
            if not is_stored(session, message):
                use_once(session, "mailgun", token, utcnow())

    service = settings.email_service_for(envelope_recipients(post) + recipients(message))
    result = await run_in_threadpool(partial(accept, app, message, service=service, before=before))
    if result.duplicate:  # a retry, or a replay of an erased customer's mail (no conversation)
        outcome = "duplicate"
    elif result.conversation_id is None:
        outcome = "ignored"  # automatic mail about no conversation of ours
    else:
        outcome = "recorded" if message.control == "no_reply" else "accepted"
        if message.hold is not None or result.held:
            outcome = "held"
    answer = {
        "status": outcome,
        "conversation_id": str(result.conversation_id) if result.conversation_id else None,
    }
    if message.metadata.get("automatic"):  # why it was taken for automatic mail
        answer["automatic"] = message.metadata["automatic"]
    return JSONResponse(answer)
