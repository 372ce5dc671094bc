"""The inbound email webhook: authenticate, find the raw MIME, parse, one ingest call.

Answers 4xx naming the problem for anything it refuses and never stores half a message;
an automatic mail (auto-reply, bounce) answers 200 so the provider does not retry it.
"""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.deps import read_body, state
from channels.mail.inbound import check_secret, read_post, verify_mailgun
from channels.mail.parse import parse_email, recipients
from conversations.ingest import ingest_committed
from conversations.nonces import use_once
from conversations.types import utcnow

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


@router.post("/email")
async def inbound_email(request: Request) -> JSONResponse:
    app = state(request)
    settings = app.settings
    check_secret(request.headers, settings.email_secret())
    body = await read_body(request, settings.email_max_bytes)
    post = read_post(request.headers.get("content-type", ""), body)
    before = None
    if post.source == "mailgun" and settings.mailgun_signing_key:
        token = verify_mailgun(
            post.fields, settings.mailgun_signing_key, max_age=settings.mailgun_max_age
        )

        def before(session: Session) -> None:
            use_once(session, "mailgun", token, utcnow())

    message = await run_in_threadpool(parse_email, post.raw)
    result = await run_in_threadpool(
        partial(
            ingest_committed,
            app.engine,
            message,
            service=settings.email_service_for(recipients(message)),
            defaults=settings.default_policies(),
            help_text=settings.help_text,
            before=before,
        )
    )
    if result.needs_turn and result.conversation_id is not None:
        await run_in_threadpool(app.waker.turn, result.conversation_id)
    if result.conversation_id is None:
        outcome = "ignored"  # automatic mail about no conversation of ours
    elif result.duplicate:
        outcome = "duplicate"
    else:
        outcome = "recorded" if message.control == "no_reply" else "accepted"
    return JSONResponse(
        {
            "status": outcome,
            "conversation_id": str(result.conversation_id) if result.conversation_id else None,
            "automatic": message.metadata.get("automatic"),
        }
    )
