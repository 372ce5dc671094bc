"""Operator routes for inactivity timeout policies: /v1/timeouts."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import (
    AfterValidator,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)
from starlette.concurrency import run_in_threadpool

from api.deps import ApiBody, require_api_key, state
from api.pages import DESCRIPTION, PAGE_HEADERS, decode_id, page
from api.problems import refusals
from conversations.channel_names import CHANNEL_NAMES
from conversations.db import session_factory, transaction
from conversations.errors import InvalidInput, NotFound
from conversations.timeout_store import (
    delete_policy,
    history,
    load_policies,
    policy_as_dict,
    set_policy,
)
from conversations.timeouts import Policy, Scope, format_duration, parse_duration
from conversations.types import iso, utcnow

router = APIRouter(
    prefix="/v1/timeouts", dependencies=[Depends(require_api_key)], tags=["timeouts"]
)

PRECEDENCE = (
    "conversation override > service+channel > channel > service > global > shipped default"
)
DEFAULT_NUDGE = "Still there? Reply to keep this conversation open."


def _a_duration(value: str | int | float | None) -> str | int | float | None:
    parse_duration(value)  # raises ValueError naming the problem → 422 on this field
    return value


def _a_duration_or_default(value: str | int | float | None) -> str | int | float | None:
    if isinstance(value, str) and value.strip().lower() == "default":
        return value
    return _a_duration(value)


# Checked after pydantic's own type check (strict: no true/false as 1/0), so a value of the
# wrong shape ({}, []) is a 422 naming the field, never a parse on something not a duration.
_DurationShape = StrictStr | StrictInt | StrictFloat | None
Duration = Annotated[_DurationShape, AfterValidator(_a_duration)]
DurationOrDefault = Annotated[_DurationShape, AfterValidator(_a_duration_or_default)]


def _channel(value: str | None) -> str:
    if value and value not in CHANNEL_NAMES:
        raise ValueError(f"unknown channel {value!r}; known: {', '.join(CHANNEL_NAMES)}")
    return value or ""


class PolicyIn(ApiBody):
    """A policy for a scope. ``inactivity``: ISO 8601 duration, seconds, 24h-style, or null
    (never). Omitting service and channel sets the global default."""

    service: str | None = Field(None, max_length=64)
    channel: str | None = None
    inactivity: Duration = Field(..., description="duration or null for never")
    nudge_before: Duration = None
    nudge_message: str | None = Field(None, max_length=1600)
    closing_message: str | None = Field(None, max_length=1600)

    _channel_known = field_validator("channel")(classmethod(lambda cls, v: _channel(v) or None))

    @model_validator(mode="after")
    def _nudge_fits(self) -> PolicyIn:
        inactivity, nudge = parse_duration(self.inactivity), parse_duration(self.nudge_before)
        if nudge is not None and (inactivity is None or nudge >= inactivity):
            raise ValueError("nudge_before must be shorter than inactivity")
        return self

    def scope(self) -> Scope:
        return Scope(self.service or "", self.channel or "")

    def policy(self) -> Policy:
        nudge = parse_duration(self.nudge_before)
        return Policy(
            inactivity=parse_duration(self.inactivity),
            nudge_before=nudge,
            nudge_message=(self.nudge_message or DEFAULT_NUDGE) if nudge else None,
            closing_message=self.closing_message or None,
        )


def scope_view(scope: Scope, policy: Policy | None) -> dict[str, Any]:
    return {
        "service": scope.service or None,
        "channel": scope.channel or None,
        "scope": scope.describe(),
        **(policy_as_dict(policy) or {}),
    }


def _defaults_view(defaults: dict[str, Policy]) -> dict[str, str]:
    return {channel or "other": format_duration(p.inactivity) for channel, p in defaults.items()}


@router.get("")
async def list_timeouts(request: Request) -> dict[str, Any]:
    app = state(request)

    def read() -> dict[Scope, Policy]:
        with session_factory(app.engine)() as session:
            return load_policies(session)

    policies = await run_in_threadpool(read)
    return {
        "policies": [
            scope_view(s, p)
            for s, p in sorted(policies.items(), key=lambda i: (i[0].service, i[0].channel))
        ],
        "defaults": _defaults_view(app.settings.default_policies()),
        "precedence": PRECEDENCE,
    }


@router.put("")
async def put_timeout(
    request: Request, body: PolicyIn, actor: Annotated[str, Depends(require_api_key)]
) -> dict[str, Any]:
    app = state(request)
    scope, policy = body.scope(), body.policy()

    def write() -> Policy | None:
        with transaction(app.engine) as session:
            return set_policy(session, scope, policy, actor=actor, now=utcnow())

    old = await run_in_threadpool(write)
    queued = await run_in_threadpool(app.waker.recompute, scope.service, scope.channel)
    return {
        **scope_view(scope, policy),
        "previous": policy_as_dict(old),
        "recompute": "queued"
        if queued
        else "pending: broker unavailable, run `dormouse timeouts recompute`",
    }


@router.delete("", responses=refusals(404))
async def delete_timeout(
    request: Request,
    actor: Annotated[str, Depends(require_api_key)],
    service: Annotated[str | None, Query(max_length=64)] = None,
    channel: str | None = None,
) -> dict[str, Any]:
    app = state(request)
    try:
        scope = Scope(service or "", _channel(channel))
    except ValueError as exc:
        raise InvalidInput(f"channel: {exc}") from None

    def write() -> Policy | None:
        with transaction(app.engine) as session:
            return delete_policy(session, scope, actor=actor, now=utcnow())

    old = await run_in_threadpool(write)
    if old is None:
        raise NotFound(f"no timeout policy for {scope.describe()}")
    await run_in_threadpool(app.waker.recompute, scope.service, scope.channel)
    return {"deleted": scope_view(scope, old)}


@router.get("/history", responses={200: {"headers": PAGE_HEADERS}})
async def timeout_history(
    request: Request,
    response: Response,
    cursor: Annotated[str | None, Query(max_length=200, description=DESCRIPTION)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """Every change to the timeout policies, newest first, a page at a time."""
    app = state(request)
    before = decode_id(cursor) if cursor is not None else None

    def read() -> list[dict[str, Any]]:
        with session_factory(app.engine)() as session:
            return [
                {
                    "id": c.id,
                    "scope": Scope(c.service, c.channel).describe(),
                    "service": c.service or None,
                    "channel": c.channel or None,
                    "actor": c.actor,
                    "changed_at": iso(c.changed_at),
                    "old": c.old,
                    "new": c.new,
                }
                for c in history(session, limit + 1, before=before)
            ]

    return page(await run_in_threadpool(read), limit, lambda c: (c["id"],), request, response)


def override_from(value: str | int | float | None) -> tuple[bool, int | None]:
    """PATCH value → (override set, seconds): "default" clears, null means never."""
    if isinstance(value, str) and value.strip().lower() == "default":
        return (False, None)
    parsed: timedelta | None = parse_duration(value)
    return (True, None if parsed is None else int(parsed.total_seconds()))
