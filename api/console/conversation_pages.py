"""One conversation: the transcript, the customer, and what an operator can do to it.

Every action calls the lifecycle function the ``/v1`` route calls, in one transaction with
the audit row naming the operator, then wakes what the change produced (a delivery, a
wrap-up) as the route does.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from api.console.render import page
from api.console.session import (
    current_operator,
    field,
    flash,
    posted_form,
    session_alive,
    session_token,
)
from api.customer_routes import CustomerView, customer_view
from api.deps import state
from api.live import follow, sse
from api.timeout_routes import override_from
from conversations import actions
from conversations.db import session_factory, transaction
from conversations.errors import DormouseError, InvalidInput
from conversations.events import last_cursor
from conversations.models import Conversation, OperatorAction
from conversations.operators import actions_on, actor_of
from conversations.states import FinishReason
from conversations.timeout_store import load_policies, policy_for
from conversations.timeouts import format_duration, parse_duration
from conversations.types import utcnow
from conversations.views import ConversationDetail, conversation_detail
from conversations.wakeup import Produced, publish
from memory.store import Memory, recall

router = APIRouter()


@dataclass(frozen=True, slots=True)
class ConversationPage:
    conversation: ConversationDetail
    customer: CustomerView | None
    memory: list[Memory]
    actions: list[OperatorAction]
    replied_by: dict[int, str]  # message id → the operator who wrote it
    timeout: str
    cursor: int


def _read(request: Request, conversation_id: uuid.UUID) -> ConversationPage | None:
    app = state(request)
    with session_factory(app.engine)() as session:
        detail = conversation_detail(session, conversation_id)
        if detail is None:
            return None
        conv = session.get_one(Conversation, conversation_id)
        policy = policy_for(conv, load_policies(session), app.settings.default_policies())
        actions = actions_on(session, conversation_id)
        replied_by = {
            int(a.detail["message_id"]): a.actor.removeprefix("operator:")
            for a in actions
            if a.action == "reply" and "message_id" in a.detail
        }
        return ConversationPage(
            conversation=detail,
            customer=customer_view(session, detail.customer_id),
            memory=recall(
                session,
                detail.customer_id,
                now=utcnow(),
                retention=app.settings.memory_retention_delta,
            ),
            actions=actions,
            replied_by=replied_by,
            timeout=format_duration(policy.inactivity),
            cursor=last_cursor(session, conversation_id),
        )


@router.get("/conversations/{conversation_id}")
async def conversation(
    request: Request,
    conversation_id: uuid.UUID,
    _: Annotated[str, Depends(current_operator)],
    fragment: bool = False,
) -> HTMLResponse:
    found = await run_in_threadpool(_read, request, conversation_id)
    if found is None:
        return page(
            request,
            "refused.html",
            {"title": "No such conversation", "detail": "It may have been erased."},
            status=404,
        )
    turns = {t.turn_number: t for t in found.conversation.turns}
    # A turn's tool calls and tokens are shown after the last message it wrote.
    last_of_turn = {m.turn: m.id for m in found.conversation.messages if m.turn is not None}
    context: dict[str, Any] = {
        "title": found.customer.name if found.customer and found.customer.name else "Conversation",
        "c": found.conversation,
        "p": found,
        "turn_after": {mid: turns[t] for t, mid in last_of_turn.items() if t in turns},
    }
    return page(request, "_conversation_refresh.html" if fragment else "conversation.html", context)


@router.get("/conversations/{conversation_id}/events")
async def conversation_events(
    request: Request,
    conversation_id: uuid.UUID,
    _: Annotated[str, Depends(current_operator)],
    after: int = 0,
) -> StreamingResponse:
    """Server-sent events of the conversation (the live API's), for the page to refresh on:
    the signed-in operator's cookie instead of an API key, same origin, so EventSource works."""
    app = state(request)
    resumed = request.headers.get("last-event-id", "")
    if resumed.isdigit():  # EventSource reconnecting: from the last event it saw
        after = int(resumed)
    token = session_token(request) or ""

    async def lines() -> AsyncIterator[bytes]:
        async for event in follow(
            app.engine,
            app.hub,
            conversation_id,
            after,
            poll=app.settings.events_poll_seconds,
        ):
            # A session that ended (signed out, everywhere, a new password) ends its stream.
            if not await run_in_threadpool(session_alive, app.engine, token):
                return
            if event is None:
                yield sse(None)
                continue
            # Only that something changed: the page re-reads itself through the same
            # rendering as a reload, so the stream carries no customer text.
            yield sse({"type": "changed", "cursor": str(event.cursor)})

    return StreamingResponse(
        lines(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _act(
    request: Request,
    conversation_id: uuid.UUID,
    work: Callable[[Session], Produced | None],
    done: str,
) -> RedirectResponse:
    """Run one action and its audit in a transaction; say how it went on the next page."""
    app = state(request)
    try:
        with transaction(app.engine) as session:
            produced = work(session)
    except DormouseError as exc:
        if exc.http_status >= 500:
            raise
        flash(request, "error", str(exc))
    else:
        if produced is not None:
            publish(app.waker, produced)
        flash(request, "ok", done)
    return RedirectResponse(f"/console/conversations/{conversation_id}", status_code=303)


Operator = Annotated[str, Depends(current_operator)]
Posted = Annotated[FormData, Depends(posted_form)]


@router.post("/conversations/{conversation_id}/take-over")
async def take_over(
    request: Request, conversation_id: uuid.UUID, name: Operator, _: Posted
) -> RedirectResponse:
    def work(session: Session) -> Produced:
        reason = f"taken over by {name}"
        return actions.take_over(
            session, conversation_id, actor_of(name), reason=reason, now=utcnow()
        )

    return await run_in_threadpool(
        _act, request, conversation_id, work, "You have taken over: the agent is silent."
    )


@router.post("/conversations/{conversation_id}/reply")
async def reply(
    request: Request, conversation_id: uuid.UUID, name: Operator, form: Posted
) -> RedirectResponse:
    text = str(form.get("text") or "")
    defaults = state(request).settings.default_policies()

    def work(session: Session) -> Produced:
        if not text.strip():
            raise InvalidInput("Write something to send.")
        _, produced = actions.reply(
            session, conversation_id, actor_of(name), text=text, now=utcnow(), defaults=defaults
        )
        return produced

    return await run_in_threadpool(_act, request, conversation_id, work, "Reply queued.")


@router.post("/conversations/{conversation_id}/hand-back")
async def hand_back(
    request: Request, conversation_id: uuid.UUID, name: Operator, _: Posted
) -> RedirectResponse:
    defaults = state(request).settings.default_policies()

    def work(session: Session) -> Produced:
        return actions.hand_back(
            session, conversation_id, actor_of(name), now=utcnow(), defaults=defaults
        )

    return await run_in_threadpool(
        _act, request, conversation_id, work, "Handed back: the agent answers again."
    )


@router.post("/conversations/{conversation_id}/release")
async def release(
    request: Request, conversation_id: uuid.UUID, name: Operator, _: Posted
) -> RedirectResponse:
    defaults = state(request).settings.default_policies()

    def work(session: Session) -> Produced:
        return actions.release(
            session, conversation_id, actor_of(name), now=utcnow(), defaults=defaults
        )

    return await run_in_threadpool(
        _act, request, conversation_id, work, "Released: the agent answers what it held."
    )


@router.post("/conversations/{conversation_id}/finish")
async def finish(
    request: Request, conversation_id: uuid.UUID, name: Operator, _: Posted
) -> RedirectResponse:
    def work(session: Session) -> Produced:
        reason = FinishReason.OPERATOR
        return actions.finish(session, conversation_id, actor_of(name), reason=reason, now=utcnow())

    return await run_in_threadpool(_act, request, conversation_id, work, "Conversation finished.")


@router.post("/conversations/{conversation_id}/timeout")
async def set_timeout(
    request: Request, conversation_id: uuid.UUID, name: Operator, form: Posted
) -> RedirectResponse:
    wanted = field(form, "inactivity") or "default"
    defaults = state(request).settings.default_policies()

    def work(session: Session) -> Produced:
        try:
            parse_duration(None if wanted.lower() == "default" else wanted)
        except ValueError as exc:
            raise InvalidInput(f"Timeout: {exc}") from None
        return actions.set_timeout(
            session,
            conversation_id,
            actor_of(name),
            override=override_from(wanted),
            shown=wanted,
            now=utcnow(),
            defaults=defaults,
        )

    return await run_in_threadpool(
        _act, request, conversation_id, work, f"This conversation's timeout is now {wanted}."
    )
