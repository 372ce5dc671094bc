"""The live conversation API: start a chat and talk to its agent over NDJSON streams, and
follow any conversation's events (NDJSON or SSE), resuming by cursor with nothing lost or
repeated. How streams wait is ``api/live.py``; what they read is ``conversations/events.py``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import Field, StringConstraints
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.deps import ApiBody, require_api_key, state
from api.live import NDJSON, SSE, follow, ndjson, shown, sse
from api.problems import refusals
from channels.chat import live as chat
from conversations import events
from conversations.channel_names import LONGEST_TEXT
from conversations.db import transaction
from conversations.errors import (
    BadRequest,
    ConversationNotFound,
    InvalidInput,
    UnsupportedMediaType,
)
from conversations.events import StoredEvent
from conversations.states import ConversationStatus
from conversations.types import utcnow
from conversations.wakeup import Produced, publish

router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)], tags=["live"])

STREAMS: dict[int | str, dict[str, Any]] = {
    200: {"description": "The events, one JSON object per line.", "content": {NDJSON: {}}}
}
UserId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]


class ChatStart(ApiBody):
    service: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
    user_id: UserId | None = None
    customer_id: uuid.UUID | None = None
    context: dict[str, Any] = Field(default_factory=dict)
    message: str | None = Field(
        default=None,
        min_length=1,
        max_length=LONGEST_TEXT,
        description="The person's first message; without one the agent writes first.",
    )


class Interaction(ApiBody):
    text: str = Field(min_length=1, max_length=LONGEST_TEXT)


@router.post("/chat/conversations", responses={**STREAMS, **refusals(404, 409)})
async def start_chat(request: Request, body: ChatStart) -> StreamingResponse:
    """Open a chat with a service's agent and stream until its first turn is done:
    ``conversation-created``, the agent's ``new-message`` events, ``interaction-complete``.
    A second open chat for the same customer and service is a 409 naming it."""
    app = state(request)
    settings = app.settings

    def write(session: Session) -> uuid.UUID:
        return chat.open_chat(
            session,
            settings,
            service=body.service,
            user_id=body.user_id,
            customer_id=body.customer_id,
            context=body.context,
            message=body.message,
            now=utcnow(),
        )

    conversation_id = await run_in_threadpool(_in_transaction, app.engine, write)
    produced = Produced.of(turns=[conversation_id], changed=[conversation_id])
    await run_in_threadpool(publish, app.waker, produced)
    return _stream(request, conversation_id, 0, until=_turn_done(None))


@router.post(
    "/chat/conversations/{conversation_id}/interact",
    responses={**STREAMS, **refusals(404, 409, 415)},
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {"schema": Interaction.model_json_schema()},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["recorded_message"],
                        "properties": {"recorded_message": {"type": "string"}},
                    }
                },
            }
        }
    },
)
async def interact(
    request: Request,
    conversation_id: uuid.UUID,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> StreamingResponse:
    """Say something in a chat and stream the answer: ``user-message-available``, the
    agent's ``new-message`` events, then ``interaction-complete`` (``end-session`` if the
    turn finished the chat). With ``Idempotency-Key`` a retry says it once."""
    app = state(request)
    settings = app.settings
    text = await _interaction_text(request)

    def write(session: Session) -> tuple[int, int]:
        return chat.say(
            session, settings, conversation_id, text, idempotency_key=idempotency_key, now=utcnow()
        )

    message_id, after = await run_in_threadpool(_in_transaction, app.engine, write)
    produced = Produced.of(turns=[conversation_id], changed=[conversation_id])
    await run_in_threadpool(publish, app.waker, produced)
    return _stream(request, conversation_id, after, until=_turn_done(message_id), mine=message_id)


@router.get(
    "/conversations/{conversation_id}/events",
    responses={
        200: {
            "description": "The events from the cursor on, then each as it commits.",
            "content": {NDJSON: {}, SSE: {}},
        },
        **refusals(404),
    },
)
async def conversation_events(
    request: Request,
    conversation_id: uuid.UUID,
    after: Annotated[
        str | None, Query(max_length=20, description="The cursor of the last event seen.")
    ] = None,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
) -> StreamingResponse:
    """Any conversation's events (SMS, email and chat) from ``after`` on, kept open with
    heartbeats (empty lines; SSE comments) until it finishes. Send
    ``Accept: text/event-stream`` for SSE, where ``Last-Event-ID`` resumes."""
    app = state(request)
    cursor = last_event_id if last_event_id is not None else after
    start = _cursor(cursor, "Last-Event-ID" if last_event_id is not None else "after")

    if not await run_in_threadpool(_in_transaction, app.engine, chat.exists, conversation_id):
        raise ConversationNotFound(f"no conversation {conversation_id}")
    as_sse = SSE in request.headers.get("accept", "")
    return _stream(
        request,
        conversation_id,
        start,
        until=lambda e: e.type == events.ENDED,
        deadline=None,
        media_type=SSE if as_sse else NDJSON,
    )


def _stream(
    request: Request,
    conversation_id: uuid.UUID,
    after: int,
    *,
    until: Callable[[StoredEvent], bool],
    mine: int | None = None,
    deadline: float | bool | None = True,
    media_type: str = NDJSON,
) -> StreamingResponse:
    app = state(request)
    encode = sse if media_type == SSE else ndjson
    loop = asyncio.get_running_loop()
    if deadline is True:
        deadline = loop.time() + app.settings.live_reply_timeout

    async def lines() -> AsyncIterator[bytes]:
        last = after
        async for event in follow(
            app.engine,
            app.hub,
            conversation_id,
            after,
            poll=app.settings.events_poll_seconds,
            stop=until,
            deadline=deadline or None,
        ):
            if event is None:
                yield encode(None)
                continue
            last = event.cursor
            mine_now = event.message is not None and event.message.id == mine
            kind = "user-message-available" if mine_now else None
            if event.type == events.HANDOFF and event.data.get("quarantined"):
                kind = "error"
            yield encode(shown(event, type=kind))
            if until(event):
                return
        if deadline:  # the wait ended before the turn did: say where to pick it up
            yield encode(
                {
                    "type": "error",
                    "cursor": str(last),
                    "conversation_id": str(conversation_id),
                    "reason": "no reply yet; it will come on GET "
                    f"/v1/conversations/{conversation_id}/events?after={last}",
                }
            )

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(lines(), media_type=media_type, headers=headers)


def _turn_done(message_id: int | None) -> Callable[[StoredEvent], bool]:
    """Where an interaction's stream ends: the turn that answered ``message_id`` (any turn
    when None) unless it finished the chat (then at ``end-session``), or a handoff."""

    def done(event: StoredEvent) -> bool:
        if event.type in (events.ENDED, events.HANDOFF):
            return True
        if event.type != events.TURN_COMPLETED or event.data.get("status") in (
            ConversationStatus.FINISHED,
            ConversationStatus.HANDOFF,
        ):
            return False
        return message_id is None or message_id in event.data.get("handled", [])

    return done


def _in_transaction(engine: Any, work: Callable[..., Any], *args: Any) -> Any:
    with transaction(engine) as session:
        return work(session, *args)


def _cursor(value: str | None, name: str) -> int:
    if value is None or value == "":
        return 0
    if not value.isdigit():
        raise InvalidInput(f"{name}: a cursor is the digits of an event's cursor, not {value!r}")
    return int(value)


async def _interaction_text(request: Request) -> str:
    """``recorded_message`` from a multipart form, or ``text`` from JSON."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        try:
            form = await request.form(max_files=1, max_fields=10)
        except Exception:  # a malformed multipart body: the parser's own errors vary
            raise BadRequest("body: not a readable multipart/form-data body") from None
        value = form.get("recorded_message")
        if value is None:
            raise InvalidInput("recorded_message: required (UTF-8 text)")
        raw = value if isinstance(value, str) else await value.read()
        if isinstance(raw, bytes):
            try:
                raw = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidInput("recorded_message: not UTF-8 text") from None
        text = raw
    elif kind == "application/json":
        try:
            payload = Interaction.model_validate_json(await request.body())
        except ValueError as exc:
            raise InvalidInput(f"text: {str(exc).splitlines()[-1].strip()}") from None
        text = payload.text
    else:
        raise UnsupportedMediaType(
            'send application/json {"text"} or multipart/form-data with recorded_message'
        )
    if not text.strip():
        raise InvalidInput("text: empty")
    return text
