"""Signing in and out of the console, here or everywhere."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from api.console.render import page
from api.console.session import (
    current_operator,
    end_session,
    field,
    flash,
    posted_form,
    session_token,
    start_session,
)
from api.deps import state
from conversations import operator_sessions
from conversations.db import transaction
from conversations.operators import find_operator, verify_password
from conversations.sign_in_limits import count_attempt, forget_attempts, prune_attempts
from conversations.types import utcnow

router = APIRouter()


def _next(target: str) -> str:
    # Only a path of the console itself: never an open redirect to another site.
    if target.startswith("/console") and not target.startswith("//"):
        return target
    return "/console/"


@router.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse("/console/inbox", status_code=303)


@router.get("/sign-in")
async def sign_in_page(request: Request, next: str = "/console/inbox") -> HTMLResponse:
    return page(request, "sign_in.html", {"next": _next(next)})


@router.post("/sign-in")
async def sign_in_post(
    request: Request, form: Annotated[FormData, Depends(posted_form)]
) -> Response:
    app = state(request)
    name, password = field(form, "name").lower()[:64], str(form.get("password") or "")
    target = _next(field(form, "next"))
    address = request.client.host if request.client else "unknown"
    lifetime = timedelta(hours=app.settings.console_session_hours)
    previous = session_token(request)  # signing in again replaces the session, not adds one

    def attempt() -> tuple[int, str | None]:
        """(seconds to wait, the new session's id)."""
        now = utcnow()
        # Counted and committed before the password is looked at (sign_in_limits.py).
        with transaction(app.engine) as session:
            wait = count_attempt(session, name, address=address, now=now)
        if wait:
            return wait, None
        opened: str | None = None
        with transaction(app.engine) as session:
            operator = verify_password(session, name, password)
            if operator is not None:
                forget_attempts(session, name, address=address)
                if previous:
                    operator_sessions.end_session(session, previous)
                opened = operator_sessions.open_session(
                    session, operator, now=now, lifetime=lifetime
                )
        with transaction(app.engine) as session:
            prune_attempts(session, now=now)
        return 0, opened

    retry_after, session_id = await run_in_threadpool(attempt)
    if retry_after:
        minutes = max(1, round(retry_after / 60))
        response = page(
            request,
            "sign_in.html",
            {
                "next": target,
                "name": name,
                "error": f"Too many failed sign-ins. Try again in about {minutes} min.",
            },
            status=429,
        )
        response.headers["Retry-After"] = str(retry_after)
        return response
    if session_id is None:
        return page(
            request,
            "sign_in.html",
            {"next": target, "name": name, "error": "Wrong name or password."},
            status=401,
        )
    start_session(request, session_id)
    return RedirectResponse(target, status_code=303)


@router.post("/sign-out")
async def sign_out(request: Request, _: Annotated[FormData, Depends(posted_form)]) -> Response:
    token = session_token(request)
    if token is not None:

        def end() -> None:
            with transaction(state(request).engine) as session:
                operator_sessions.end_session(session, token)

        await run_in_threadpool(end)
    end_session(request)
    return RedirectResponse("/console/sign-in", status_code=303)


@router.post("/sign-out-everywhere")
async def sign_out_everywhere(
    request: Request,
    name: Annotated[str, Depends(current_operator)],
    _: Annotated[FormData, Depends(posted_form)],
) -> Response:
    def end_all() -> int:
        with transaction(state(request).engine) as session:
            operator = find_operator(session, name)
            return operator_sessions.end_sessions_of(session, operator.id) if operator else 0

    ended = await run_in_threadpool(end_all)
    end_session(request)
    flash(request, "ok", f"Signed out everywhere ({ended} session{'' if ended == 1 else 's'}).")
    return RedirectResponse("/console/sign-in", status_code=303)
