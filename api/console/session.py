"""Who is signed in to the console, and the form token every POST must carry.

The cookie (Starlette's ``SessionMiddleware``: signed by itsdangerous, HttpOnly,
SameSite=Lax, path /console) carries, once signed in, a random session id; the session
itself is a row (conversations/operator_sessions.py). Every request looks the row up, so
signing out, "sign out everywhere", a new password or removing the operator ends it at
once, and a copied cookie ends with it, across restarts too.

A signed-in session's form token is an HMAC of its id: new with each session, and of no use
once the session has ended (every action also needs the session alive). Before sign-in the
cookie holds a random token of its own, for the sign-in form.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from fastapi import Request
from sqlalchemy import Engine
from starlette.datastructures import FormData

from conversations.db import session_factory
from conversations.errors import DormouseError, Unauthorized
from conversations.operator_sessions import session_operator
from conversations.types import utcnow

SESSION_ID = "sid"


class SignInRequired(Unauthorized):
    """No operator is signed in (or their session ended or expired)."""


class FormRefused(DormouseError):
    """A POST without this session's form token: a forged or expired form."""

    http_status = 403


def session_token(request: Request) -> str | None:
    """The session id the cookie carries (alive or not: ``current_operator`` says)."""
    found = request.session.get(SESSION_ID)
    return str(found) if found else None


def _bound_token(session_id: str) -> str:
    return hmac.new(session_id.encode(), b"console form token", hashlib.sha256).hexdigest()


def _expected_token(request: Request) -> str | None:
    found = session_token(request)
    if found:
        return _bound_token(found)
    anonymous = request.session.get("csrf")
    return str(anonymous) if anonymous else None


def csrf_token(request: Request) -> str:
    token = _expected_token(request)
    if token is None:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


def signed_in_name(request: Request) -> str | None:
    """Who ``current_operator`` found signed in for this request (None on pages without)."""
    name = getattr(request.state, "operator", None)
    return str(name) if name else None


def start_session(request: Request, session_id: str) -> None:
    """The cookie of a fresh session: anything planted in it before is gone."""
    request.session.clear()
    request.session[SESSION_ID] = session_id


def end_session(request: Request) -> None:
    request.session.clear()


def flash(request: Request, kind: str, text: str) -> None:
    request.session["flash"] = [kind, text]


def take_flash(request: Request) -> dict[str, str] | None:
    found = request.session.pop("flash", None)
    return {"kind": found[0], "text": found[1]} if found else None


def current_operator(request: Request) -> str:
    """The signed-in operator's name (a dependency of every page but sign-in)."""
    token = session_token(request)
    if token is None:
        raise SignInRequired()
    engine = request.app.state.dormouse.engine
    with session_factory(engine)() as session:
        operator = session_operator(session, token, now=utcnow())
        name = operator.name if operator else None
    if name is None:
        end_session(request)
        raise SignInRequired()
    request.state.operator = name
    return name


def session_alive(engine: Engine, token: str) -> bool:
    """Whether a session still lives: a long-lived stream asks at each of its lines."""
    with session_factory(engine)() as session:
        return session_operator(session, token, now=utcnow()) is not None


async def posted_form(request: Request) -> FormData:
    """The POSTed form, once its CSRF token matched this session's (a dependency)."""
    form = await request.form()
    sent = form.get("csrf")
    expected = _expected_token(request)
    if not isinstance(sent, str) or not expected or not hmac.compare_digest(sent, expected):
        raise FormRefused()
    return form


def field(form: FormData, name: str, default: str = "") -> str:
    value: Any = form.get(name, default)
    return value.strip() if isinstance(value, str) else default
