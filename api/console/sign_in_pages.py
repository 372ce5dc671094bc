"""Signing in and out of the console."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from api.console.render import page
from api.console.session import end_session, field, posted_form, start_session
from api.deps import state
from conversations.db import transaction
from conversations.operators import SignIn, sign_in
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
    name, password = field(form, "name").lower(), str(form.get("password") or "")
    target = _next(field(form, "next"))
    ip = request.client.host if request.client else "unknown"

    def attempt() -> tuple[int, str | None, str | None]:
        """(seconds to wait, the operator's name, their password's change time)."""
        with transaction(app.engine) as session:
            outcome: SignIn = sign_in(session, name, password, ip=ip, now=utcnow())
            if outcome.operator is None:
                return outcome.retry_after, None, None
            return 0, outcome.operator.name, outcome.operator.password_changed_at.isoformat()

    retry_after, signed_in, since = await run_in_threadpool(attempt)
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
    if signed_in is None or since is None:
        return page(
            request,
            "sign_in.html",
            {"next": target, "name": name, "error": "Wrong name or password."},
            status=401,
        )
    start_session(request, signed_in, since)
    return RedirectResponse(target, status_code=303)


@router.post("/sign-out")
async def sign_out(request: Request, _: Annotated[FormData, Depends(posted_form)]) -> Response:
    end_session(request)
    return RedirectResponse("/console/sign-in", status_code=303)
