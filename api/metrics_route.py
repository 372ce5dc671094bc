"""``GET /metrics``: Prometheus text format, for every process of this machine's directory.

Outside ``/v1``, so not behind the API keys: a Prometheus scrape carries no key of ours.
``METRICS_TOKEN`` closes it to anyone without the bearer token (Prometheus's
``authorization`` scrape setting sends it). Not in the OpenAPI schema: it is for
Prometheus, not for API clients (and the schema fuzzer has nothing to learn from it).
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from api.deps import state
from api.problems import problem
from conversations.backlog import BacklogCollector
from conversations.metrics_serving import ScrapeSources

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    s = state(request)
    token = s.settings.metrics_token
    if token:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            return problem(
                401,
                "METRICS_TOKEN is set: send Authorization: Bearer <token>",
                headers={"WWW-Authenticate": "Bearer"},
            )
    sources = ScrapeSources([BacklogCollector(s.engine)])
    # Reading the files and two queries: blocking work, off the event loop.
    body = await run_in_threadpool(generate_latest, sources)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
