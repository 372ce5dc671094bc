"""The FastAPI application."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from api import (
    conversation_actions,
    customer_routes,
    live_routes,
    metrics_route,
    operator_routes,
    outbound_routes,
    service_routes,
    timeout_routes,
    webhook_routes,
)
from api.console import mount_console
from api.deps import AppState, known_query_only, state
from api.docs import mount_docs
from api.gate import ApiGate
from api.page_routes import mount_chat_page
from api.problems import document_refusals, problem
from api.webhook_meter import WebhookMeter
from channels.registry import webhook_channels, webhook_routers
from conversations.broker import ping_broker
from conversations.db import get_engine
from conversations.errors import ConcurrentChange, DormouseError
from conversations.hints import EventHub
from conversations.log_context import redact
from conversations.settings import Settings, get_settings
from conversations.wakeup import CeleryWaker, Waker

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None, engine: Engine | None = None, waker: Waker | None = None
) -> FastAPI:
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await app.state.dormouse.hub.close()

    # /docs is mounted by api/docs.py: Swagger UI from files we serve, not a CDN.
    app = FastAPI(
        title="Dormouse",
        version="0.1.0",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json" if settings.docs_enabled else None,
        lifespan=lifespan,
    )
    app.state.dormouse = AppState(
        settings=settings,
        engine=engine or get_engine(),
        waker=waker or CeleryWaker(settings=settings),
        api_keys=settings.api_keys(),
        hub=EventHub(settings.effective_broker_url),
    )
    app.add_middleware(ApiGate, keys=app.state.dormouse.api_keys, max_bytes=settings.max_api_bytes)
    app.add_middleware(WebhookMeter, channels=webhook_channels())
    for router in webhook_routers():
        app.include_router(router)
    for v1 in (
        operator_routes,
        conversation_actions,
        timeout_routes,
        outbound_routes,
        customer_routes,
        live_routes,
        service_routes,
        webhook_routes,
    ):
        app.include_router(v1.router, dependencies=[Depends(known_query_only)])
    app.include_router(metrics_route.router)
    mount_chat_page(app)
    if settings.docs_enabled:
        mount_docs(app)
    mount_console(app, app.state.dormouse)

    @app.exception_handler(DormouseError)
    async def _refused(_: Request, exc: DormouseError) -> JSONResponse:
        # The one place an error of ours becomes an HTTP answer (conversations/errors.py).
        if exc.http_status >= 500:
            log.error("unhandled %s: %s", type(exc).__name__, redact(str(exc)))
            return problem(exc.http_status, "internal error")
        return problem(exc.http_status, str(exc), headers=exc.headers, refers_to=exc.refers_to())

    @app.exception_handler(OperationalError)
    @app.exception_handler(PoolTimeout)
    async def _database_down(_: Request, exc: Exception) -> JSONResponse:
        # Nothing was committed: 503 makes Twilio (and any client) retry later.
        log.error("database unavailable: %s", exc)
        return problem(503, "database unavailable, retry later", headers={"Retry-After": "5"})

    @app.exception_handler(IntegrityError)
    async def _constraint(_: Request, exc: IntegrityError) -> JSONResponse:
        # A check before the write lost a race to a concurrent one (or missed a case): the
        # database's constraint refused it and nothing was committed. A conflict, not a 500.
        # The constraint's name, not the database's words: they quote the values (addresses).
        log.warning("refused by a database constraint: %s", _constraint_of(exc))
        return problem(409, f"conflicts with an existing record ({_constraint_of(exc)})")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        if _not_json(exc.errors()):
            # FastAPI hands a route the raw bytes of a body that is not declared JSON
            # (text/plain, a form, a multipart without its boundary): the wrong type of body.
            return problem(415, f"send the body as application/json, not {_kind(request)}")
        # What is wrong and where, quoting at most a snippet of the input: a 5 MB text must
        # not come back as a 5 MB error.
        errors = [_field_error(e) for e in exc.errors()]
        said = "; ".join(_where(e) + e["msg"] for e in errors[:3])
        return problem(422, said or "invalid request", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Starlette's own refusals (no such path, method not allowed, unreadable body).
        return problem(exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, _: ClientDisconnect) -> Response:
        # The client went away mid-body (an aborted upload): nobody reads an answer, and a
        # traceback of the ASGI stack (5 KB) says nothing that this line does not.
        log.info(
            "client disconnected before sending the whole body: %s %s",
            request.method,
            request.url.path,
        )
        return Response(status_code=400)

    @app.exception_handler(ConcurrentChange)
    async def _conflicting(_: Request, exc: ConcurrentChange) -> JSONResponse:
        # Rolled back after its retries: nothing was committed, so the sender may retry.
        log.warning("gave up after concurrent changes: %s", exc)
        return problem(503, f"concurrent change, retry later: {exc}", headers={"Retry-After": "1"})

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz(request: Request) -> JSONResponse:
        s = state(request)
        checks: dict[str, str] = {}

        def database() -> None:
            with s.engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        for name, check in (
            ("database", database),
            ("broker", lambda: ping_broker(s.settings.effective_broker_url)),
        ):
            try:
                await run_in_threadpool(check)
                checks[name] = "ok"
            except Exception as exc:
                checks[name] = f"unavailable: {exc.__class__.__name__}"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(checks, status_code=200 if ready else 503)

    app.openapi = document_refusals(app)  # type: ignore[method-assign]
    return app


def _constraint_of(exc: IntegrityError) -> str:
    """The constraint's name (PostgreSQL) or what SQLite says of it, never the row's data."""
    diag = getattr(exc.orig, "diag", None)
    name = getattr(diag, "constraint_name", None)
    if name:
        return str(name)
    said = str(exc.orig).splitlines()[0] if exc.orig is not None else ""
    return said.removeprefix("UNIQUE constraint failed: ") or "a unique constraint"


SNIPPET = 80  # characters of a refused input quoted back


def _not_json(errors: Sequence[Any]) -> bool:
    """The body itself was refused as raw bytes: it was sent as something other than JSON."""
    return any(
        isinstance(e.get("input"), bytes) and tuple(e.get("loc", ())) == ("body",) for e in errors
    )


def _kind(request: Request) -> str:
    said = request.headers.get("content-type", "").split(";")[0].strip()[:100]
    return said if said and said.isprintable() else "a body without a content type"


def _where(error: dict[str, Any]) -> str:
    # "body.text: …" reads better than "body: …" for the field, and the body itself is "body".
    loc = [str(part) for part in error["loc"]]
    return ".".join(loc[1:] or loc) + ": " if loc else ""


def _field_error(error: Any) -> dict[str, Any]:
    if error.get("type") == "json_invalid":
        # pydantic puts the character offset where a field name goes: say it in words.
        at = [part for part in error.get("loc", ()) if isinstance(part, int)]
        why = str((error.get("ctx") or {}).get("error", "")).strip()
        where = f" at character {at[0]}" if at else ""
        return {
            "loc": ["body"],
            "msg": f"not valid JSON{where}" + (f" ({why})" if why else ""),
            "type": "json_invalid",
        }
    problem = {
        "loc": list(error.get("loc", ())),
        "msg": str(error.get("msg", "")).removeprefix("Value error, "),
        "type": error.get("type", "value_error"),
    }
    if "input" in error:
        shown = error["input"]
        if isinstance(shown, bytes):  # never the raw bytes: they are not JSON
            shown = shown.decode("utf-8", "replace")
        text = shown if isinstance(shown, str) else json.dumps(shown, default=str)
        if len(text) > SNIPPET:
            shown = text[:SNIPPET] + f"… ({len(text)} characters)"
        problem["input"] = shown
    return problem
