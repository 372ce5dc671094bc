"""Timeout policies: the table with scopes and precedence, set and unset with the effect shown
before saving, and the audit history (who, when, old → new)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from api.console.render import page
from api.console.session import current_operator, field, flash, posted_form
from api.deps import state
from api.timeout_routes import DEFAULT_NUDGE, PRECEDENCE, PolicyIn
from conversations.channel_names import CHANNEL_NAMES
from conversations.db import session_factory, transaction
from conversations.inbox import governed_by, services
from conversations.models import TimeoutPolicy
from conversations.operators import actor_of, record_action
from conversations.timeout_store import (
    delete_policy,
    describe_effect,
    effect_of,
    history,
    set_policy,
)
from conversations.timeouts import Scope, format_duration
from conversations.types import utcnow

router = APIRouter()
HISTORY_PAGE = 25


@dataclass(frozen=True, slots=True)
class PolicyRow:
    scope: Scope
    inactivity: str
    nudge_before: str | None
    nudge_message: str | None
    closing_message: str | None
    updated_by: str
    updated_at: Any
    governs: int


def _seconds(value: int | None) -> str:
    return "never" if value is None else format_duration(timedelta(seconds=value))


# Most specific first, as conversations/timeouts.py picks them.
def _rank(scope: Scope) -> int:
    return {(True, True): 0, (False, True): 1, (True, False): 2, (False, False): 3}[
        (bool(scope.service), bool(scope.channel))
    ]


def _read(request: Request, before: int | None) -> dict[str, Any]:
    app = state(request)
    with session_factory(app.engine)() as session:
        rows = list(session.scalars(select(TimeoutPolicy)))
        scopes = {(r.service, r.channel) for r in rows}
        policies = [
            PolicyRow(
                scope=Scope(r.service, r.channel),
                inactivity=_seconds(r.inactivity_seconds),
                nudge_before=_seconds(r.nudge_before_seconds) if r.nudge_before_seconds else None,
                nudge_message=r.nudge_message,
                closing_message=r.closing_message,
                updated_by=r.updated_by,
                updated_at=r.updated_at,
                governs=governed_by(session, (r.service, r.channel), scopes),
            )
            for r in rows
        ]
        policies.sort(key=lambda p: (_rank(p.scope), p.scope.service, p.scope.channel))
        changes = history(session, HISTORY_PAGE + 1, before=before)
        return {
            "policies": policies,
            "changes": changes[:HISTORY_PAGE],
            "older": changes[HISTORY_PAGE - 1].id if len(changes) > HISTORY_PAGE else None,
            "services": services(session),
        }


def _defaults(request: Request) -> list[tuple[str, str]]:
    shipped = state(request).settings.default_policies()
    return [
        (channel or "any other", format_duration(p.inactivity)) for channel, p in shipped.items()
    ]


def _context(request: Request, data: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {
        "title": "Timeouts",
        "precedence": PRECEDENCE,
        "defaults": _defaults(request),
        "channels": CHANNEL_NAMES,
        "default_nudge": DEFAULT_NUDGE,
        **data,
        **more,
    }


@router.get("/timeouts")
async def timeouts(
    request: Request,
    _: Annotated[str, Depends(current_operator)],
    service: Annotated[str, Query(max_length=64)] = "",
    channel: Annotated[str, Query(max_length=16)] = "",
    before: int | None = None,
) -> HTMLResponse:
    data = await run_in_threadpool(_read, request, before)
    # "Edit" on a row fills the form with that scope's policy.
    editing = next(
        (p for p in data["policies"] if (p.scope.service, p.scope.channel) == (service, channel)),
        None,
    )
    form = {
        "service": service,
        "channel": channel,
        "inactivity": editing.inactivity if editing else "",
        "nudge_before": editing.nudge_before or "" if editing else "",
        "nudge_message": editing.nudge_message or "" if editing else "",
        "closing_message": editing.closing_message or "" if editing else "",
    }
    return page(request, "timeouts.html", _context(request, data, form=form))


def _policy_in(form: FormData) -> tuple[dict[str, str], PolicyIn | None, list[str]]:
    shown = {
        name: field(form, name)
        for name in (
            "service",
            "channel",
            "inactivity",
            "nudge_before",
            "nudge_message",
            "closing_message",
        )
    }
    try:
        body = PolicyIn.model_validate({k: (v or None) for k, v in shown.items()})
    except ValidationError as exc:
        errors = [
            f"{'.'.join(str(p) for p in e['loc']) or 'policy'}: "
            + str(e["msg"]).removeprefix("Value error, ")
            for e in exc.errors()
        ]
        if not shown["inactivity"]:
            errors = ["inactivity: say how long (30m, 2h, 3d) or never"]
        return shown, None, errors
    return shown, body, []


@router.post("/timeouts")
async def save_timeout(
    request: Request,
    name: Annotated[str, Depends(current_operator)],
    form: Annotated[FormData, Depends(posted_form)],
) -> Response:
    app = state(request)
    shown, body, errors = _policy_in(form)
    if body is None:
        data = await run_in_threadpool(_read, request, None)
        return page(
            request, "timeouts.html", _context(request, data, form=shown, errors=errors), status=422
        )
    scope, policy = body.scope(), body.policy()
    if field(form, "confirm") != "yes":

        def review() -> dict[str, Any]:
            with session_factory(app.engine)() as session:
                scopes = {(r.service, r.channel) for r in session.scalars(select(TimeoutPolicy))}
                current = session.scalar(
                    select(TimeoutPolicy).where(
                        TimeoutPolicy.service == scope.service,
                        TimeoutPolicy.channel == scope.channel,
                    )
                )
                effect = effect_of(
                    session, scope, policy, defaults=app.settings.default_policies(), now=utcnow()
                )
                return {
                    "governs": governed_by(session, (scope.service, scope.channel), scopes),
                    "replaces": current is not None,
                    "right_away": describe_effect(effect),
                }

        seen = await run_in_threadpool(review)
        return page(
            request,
            "timeout_review.html",
            {
                "title": "Review timeout",
                "form": shown,
                "scope": scope.describe(),
                "policy": policy,
                "inactivity": format_duration(policy.inactivity),
                "nudge_before": format_duration(policy.nudge_before)
                if policy.nudge_before
                else None,
                **seen,
            },
        )

    def write() -> None:
        with transaction(app.engine) as session:
            now = utcnow()
            set_policy(session, scope, policy, actor=actor_of(name), now=now)
            record_action(
                session,
                actor_of(name),
                "set_timeout_policy",
                now=now,
                scope=scope.describe(),
            )

    await run_in_threadpool(write)
    queued = await run_in_threadpool(app.waker.recompute, scope.service, scope.channel)
    flash(
        request,
        "ok" if queued else "error",
        f"Saved the timeout for {scope.describe()}; open conversations are being updated."
        if queued
        else f"Saved the timeout for {scope.describe()}, but the broker is unavailable: run "
        "`dormouse timeouts recompute` to update open conversations.",
    )
    return RedirectResponse("/console/timeouts", status_code=303)


@router.post("/timeouts/remove")
async def remove_timeout(
    request: Request,
    name: Annotated[str, Depends(current_operator)],
    form: Annotated[FormData, Depends(posted_form)],
) -> RedirectResponse:
    app = state(request)
    channel = field(form, "channel")
    scope = Scope(field(form, "service"), channel if channel in CHANNEL_NAMES else "")

    def write() -> bool:
        with transaction(app.engine) as session:
            now = utcnow()
            old = delete_policy(session, scope, actor=actor_of(name), now=now)
            if old is not None:
                record_action(
                    session,
                    actor_of(name),
                    "remove_timeout_policy",
                    now=now,
                    scope=scope.describe(),
                )
            return old is not None

    if await run_in_threadpool(write):
        await run_in_threadpool(app.waker.recompute, scope.service, scope.channel)
        flash(request, "ok", f"Removed the timeout for {scope.describe()}.")
    else:
        flash(request, "error", f"There is no timeout for {scope.describe()}.")
    return RedirectResponse("/console/timeouts", status_code=303)
