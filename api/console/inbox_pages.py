"""The inbox: conversations newest activity first, those waiting for a human on top."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from api.console.render import page
from api.console.session import current_operator
from api.deps import state
from api.pages import decode, encode
from conversations.channel_names import CHANNEL_NAMES
from conversations.db import session_factory
from conversations.errors import InvalidInput
from conversations.inbox import VIEWS, Filters, InboxRow, inbox_page, services, view_counts

router = APIRouter()
PAGE = 50


def _after(cursor: str | None) -> tuple[int, datetime, uuid.UUID] | None:
    if not cursor:
        return None
    rank, at, conv = decode(cursor, 3)
    try:
        return int(rank), datetime.fromisoformat(at), uuid.UUID(conv)
    except ValueError:
        raise InvalidInput("cursor: not a cursor this list answered") from None


@router.get("/inbox")
async def inbox(
    request: Request,
    _: Annotated[str, Depends(current_operator)],
    view: Annotated[str, Query(max_length=16)] = "open",
    channel: Annotated[str, Query(max_length=16)] = "",
    service: Annotated[str, Query(max_length=64)] = "",
    q: Annotated[str, Query(max_length=320)] = "",
    cursor: Annotated[str, Query(max_length=200)] = "",
    fragment: bool = False,
) -> HTMLResponse:
    app = state(request)
    filters = Filters(
        view=view if view in VIEWS else "open",
        channel=channel if channel in CHANNEL_NAMES else None,
        service=service or None,
        search=q or None,
    )
    try:
        after = _after(cursor)
    except InvalidInput:
        after = None  # a stale or mangled cursor: show the first page rather than an error

    def read() -> tuple[list[InboxRow], dict[str, int], list[str]]:
        with session_factory(app.engine)() as session:
            rows = inbox_page(session, filters, after=after, limit=PAGE + 1)
            return rows, view_counts(session, filters), services(session)

    rows, counts, known_services = await run_in_threadpool(read)
    next_cursor = None
    if len(rows) > PAGE:
        rows = rows[:PAGE]
        last = rows[-1]
        next_cursor = encode((last.rank, last.updated_at.isoformat(), last.id))
    context: dict[str, Any] = {
        "title": "Inbox",
        "rows": rows,
        "counts": counts,
        "filters": filters,
        "q": q,
        "channels": CHANNEL_NAMES,
        "services": known_services,
        "next_cursor": next_cursor,
        "cursor": cursor,
        "views": [
            ("open", "Open"),
            ("handoff", "Waiting for a human"),
            ("held", "Held"),
            ("agent", "With the agent"),
            ("finished", "Finished"),
            ("all", "All"),
        ],
    }
    # The live refresh asks for the list alone, to swap it in place.
    return page(request, "_inbox_list.html" if fragment else "inbox.html", context)
