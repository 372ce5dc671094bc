"""The FastAPI application."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.concurrency import run_in_threadpool

from api import (
    conversation_actions,
    customer_routes,
    email_webhooks,
    operator_routes,
    outbound_routes,
    timeout_routes,
    twilio_webhooks,
)
from api.deps import AppState, state
from conversations.broker import ping_broker
from conversations.db import POOL_SIZE, get_engine
from conversations.errors import WebhookRejected
from conversations.settings import Settings, get_settings
from conversations.wakeup import CeleryWaker, Waker

log = logging.getLogger(__name__)


@asynccontextmanager
async def _lifespan(_app: FastAPI) -> AsyncIterator[None]:
    # Blocking work (ingest, publishing) runs in anyio's threadpool, 40 threads by default.
    # More threads than pooled connections only wait for one while contending for the GIL:
    # with as many as the pool holds, one API process accepts ~20% more webhooks per second
    # (benchmarks/README.md).
    to_thread.current_default_thread_limiter().total_tokens = POOL_SIZE
    yield


def create_app(
    settings: Settings | None = None, engine: Engine | None = None, waker: Waker | None = None
) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(title="Dormouse", version="0.1.0", lifespan=_lifespan)
    app.state.dormouse = AppState(
        settings=settings,
        engine=engine or get_engine(),
        waker=waker or CeleryWaker(settings=settings),
        api_keys=settings.api_keys(),
    )
    app.include_router(twilio_webhooks.router)
    app.include_router(email_webhooks.router)
    app.include_router(operator_routes.router)
    app.include_router(conversation_actions.router)
    app.include_router(timeout_routes.router)
    app.include_router(outbound_routes.router)
    app.include_router(customer_routes.router)

    @app.exception_handler(WebhookRejected)
    async def _rejected(_: Request, exc: WebhookRejected) -> JSONResponse:
        return JSONResponse({"detail": exc.reason}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(OperationalError)
    @app.exception_handler(PoolTimeout)
    async def _database_down(_: Request, exc: Exception) -> JSONResponse:
        # Nothing was committed: 503 makes Twilio (and any client) retry later.
        log.error("database unavailable: %s", exc)
        return JSONResponse(
            {"detail": "database unavailable, retry later"},
            status_code=503,
            headers={"Retry-After": "5"},
        )

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

    return app
