"""Shared request dependencies: settings, engine, waker, API-key auth."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from fastapi import Request
from sqlalchemy import Engine

from conversations.errors import Unauthorized
from conversations.settings import Settings
from conversations.wakeup import Waker


@dataclass(frozen=True)
class AppState:
    settings: Settings
    engine: Engine
    waker: Waker
    api_keys: dict[str, str]


def state(request: Request) -> AppState:
    found: AppState = request.app.state.dormouse
    return found


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
