"""Shared request dependencies: settings, engine, waker, API-key auth."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Engine

from api.live import EventHub
from conversations.errors import Unauthorized
from conversations.settings import Settings
from conversations.wakeup import Waker


@dataclass(frozen=True)
class AppState:
    settings: Settings
    engine: Engine
    waker: Waker
    api_keys: dict[str, str]
    hub: EventHub


def state(request: Request) -> AppState:
    found: AppState = request.app.state.dormouse
    return found


def require_api_key(request: Request) -> str:
    """The name of the calling key, which ``api/gate.py`` checked before the route ran."""
    name: str | None = getattr(request.state, "api_key_name", None)
    if name is None:  # a route mounted outside /v1 that asks for a key
        raise Unauthorized("missing Authorization: Bearer <key>")
    return name


class ApiBody(BaseModel):
    """Every /v1 request body: a field the API does not know is refused (422 naming it),
    not silently dropped, so a misspelt field never looks like it took effect."""

    model_config = ConfigDict(extra="forbid")
