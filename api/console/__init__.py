"""The operator console at ``/console``: server-rendered pages for the people behind the agents.

A sub-application of its own, mounted on the API: its session middleware touches only
``/console`` (the webhooks and ``/v1`` never decode a cookie), its refusals are pages rather
than problem documents, and it stays out of the OpenAPI schema. Pages call the same domain
functions as the ``/v1`` routes, never HTTP to itself.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import OperationalError
from starlette.middleware.sessions import SessionMiddleware

from api.console import (
    conversation_pages,
    customer_pages,
    inbox_pages,
    sign_in_pages,
    timeout_pages,
)
from api.console.gate import ConsoleGate
from api.console.render import STATIC, page
from api.console.session import FormRefused, SignInRequired
from api.deps import AppState

PREFIX = "/console"
COOKIE = "dormouse_console"


def console_app(app_state: AppState) -> FastAPI:
    settings = app_state.settings
    console = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    console.state.dormouse = app_state
    console.add_middleware(
        SessionMiddleware,
        secret_key=settings.console_key(),
        session_cookie=COOKIE,
        max_age=int(settings.console_session_hours * 3600),
        path=PREFIX,
        same_site="lax",
        https_only=settings.public_url.startswith("https://"),
    )
    # Outermost: a body too large or not a form is refused before anything reads it.
    console.add_middleware(ConsoleGate)
    for module in (sign_in_pages, inbox_pages, conversation_pages, timeout_pages, customer_pages):
        console.include_router(module.router)
    console.mount("/assets", StaticFiles(directory=STATIC), name="console-assets")

    @console.exception_handler(SignInRequired)
    async def _signed_out(request: Request, _: SignInRequired) -> Response:
        # A browser asking for a page is sent to sign in and brought back; anything else (a
        # form post, the live stream) is refused: a redirect would lose what it posted.
        if request.method == "GET" and "text/event-stream" not in request.headers.get("accept", ""):
            back = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
            return RedirectResponse(f"{PREFIX}/sign-in?next={back}", status_code=303)
        return page(
            request,
            "refused.html",
            {"title": "Signed out", "detail": "Sign in to do that."},
            status=401,
        )

    @console.exception_handler(FormRefused)
    async def _forged(request: Request, _: FormRefused) -> HTMLResponse:
        return page(
            request,
            "refused.html",
            {
                "title": "This form has expired",
                "detail": "It did not carry this session's form token. Go back, reload the "
                "page and try again.",
            },
            status=403,
        )

    @console.exception_handler(OperationalError)
    async def _database_down(request: Request, _: OperationalError) -> HTMLResponse:
        response = page(
            request,
            "refused.html",
            {"title": "Database unavailable", "detail": "Try again in a few seconds."},
            status=503,
        )
        response.headers["Retry-After"] = "5"
        return response

    @console.exception_handler(404)
    async def _not_found(request: Request, _: Exception) -> HTMLResponse:
        return page(
            request,
            "refused.html",
            {"title": "Not found", "detail": "Nothing here (it may have been erased)."},
            status=404,
        )

    return console


def mount_console(app: FastAPI, app_state: AppState) -> None:
    app.mount(PREFIX, console_app(app_state), name="console")
