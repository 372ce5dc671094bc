"""Shared request dependencies: settings, engine, waker, API-key auth."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Engine

from conversations.errors import InvalidInput, Unauthorized
from conversations.hints import EventHub
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


def known_query_only(request: Request) -> None:
    """Refuse a query parameter the route does not take (``?chanel=sms``), as a misspelt body
    field is refused: ignored, it would quietly answer another question."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not request.query_params:
        return
    taken = _query_names(route.dependant)
    unknown = sorted(set(request.query_params) - taken)
    if unknown:
        takes = ", ".join(sorted(taken)) or "none"
        raise InvalidInput(
            f"unknown query parameter{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(u) for u in unknown)}; this route takes: {takes}"
        )


def _query_names(dependant: Dependant) -> set[str]:
    """The query parameters a route takes, its dependencies' included."""
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names
