"""Who is signed in to the console, and the form token every POST must carry.

The session is a cookie signed by itsdangerous (Starlette's ``SessionMiddleware``, HttpOnly,
SameSite=Lax, path /console): it holds the operator's name, when their password last changed
(a new password ends older sessions) and a random CSRF token. Every request reads the
operator anew, so removing one signs them out at once.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from fastapi import Request
from starlette.datastructures import FormData

from conversations.db import session_factory
from conversations.errors import DormouseError, Unauthorized
from conversations.operators import find_operator


class SignInRequired(Unauthorized):
    """No operator is signed in (or their account is gone or their password changed)."""


class FormRefused(DormouseError):
    """A POST without this session's form token: a forged or expired form."""

    http_status = 403


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return str(token)


def signed_in_name(request: Request) -> str | None:
    name = request.session.get("operator")
    return str(name) if name else None


def start_session(request: Request, name: str, password_changed_at: str) -> None:
    """A fresh session for the operator: a new token, so one planted before is useless."""
    request.session.clear()
    request.session.update(
        {"operator": name, "since": password_changed_at, "csrf": secrets.token_urlsafe(32)}
    )


def end_session(request: Request) -> None:
    request.session.clear()


def flash(request: Request, kind: str, text: str) -> None:
    request.session["flash"] = [kind, text]


def take_flash(request: Request) -> dict[str, str] | None:
    found = request.session.pop("flash", None)
    return {"kind": found[0], "text": found[1]} if found else None


def current_operator(request: Request) -> str:
    """The signed-in operator's name (a dependency of every page but sign-in)."""
    name = signed_in_name(request)
    if name is None:
        raise SignInRequired()
    engine = request.app.state.dormouse.engine
    with session_factory(engine)() as session:
        operator = find_operator(session, name)
        since = operator.password_changed_at.isoformat() if operator else None
    if since is None or since != request.session.get("since"):
        end_session(request)
        raise SignInRequired()
    return name


async def posted_form(request: Request) -> FormData:
    """The POSTed form, once its CSRF token matched this session's (a dependency)."""
    form = await request.form()
    sent = form.get("csrf")
    expected = request.session.get("csrf")
    if not isinstance(sent, str) or not expected or not hmac.compare_digest(sent, expected):
        raise FormRefused()
    return form


def field(form: FormData, name: str, default: str = "") -> str:
    value: Any = form.get(name, default)
    return value.strip() if isinstance(value, str) else default
