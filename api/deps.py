"""Shared request dependencies: settings, engine, waker, API-key auth, raw bodies."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from fastapi import Request
from sqlalchemy import Engine

from conversations.errors import Unauthorized, WebhookRejected
from conversations.settings import Settings
from conversations.wakeup import Waker


@dataclass(frozen=True)
class AppState:
    settings: Settings
    engine: Engine
    waker: Waker
    api_keys: dict[str, str]


def state(request: Request) -> AppState:
    return request.app.state.dormouse  # type: ignore[no-any-return]


def require_api_key(request: Request) -> str:
    """The name of the calling key; 401 unless ``Authorization: Bearer <key>`` is known."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("missing Authorization: Bearer <key>")
    for key, name in state(request).api_keys.items():
        if hmac.compare_digest(key.encode(), token.strip().encode()):
            return name
    raise Unauthorized("unknown API key")


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing (413) anything over ``limit`` before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise WebhookRejected(400, "Content-Length is not a number")
        if int(declared) > limit:
            raise WebhookRejected(413, f"body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise WebhookRejected(413, f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def public_url_for(request: Request, settings: Settings) -> str:
    """The URL the provider signed: PUBLIC_URL + path (+ query), not what a proxy shows us."""
    url = settings.public_url.rstrip("/") + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    return url
