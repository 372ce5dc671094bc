"""How console pages are drawn: the Jinja2 templates, their filters, the security headers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from api.console.session import csrf_token, signed_in_name, take_flash
from conversations import channel_names

HERE = Path(__file__).parent
STATIC = HERE / "static"

# Only this origin's own files; forms post only here; no other site may frame the console
# (clickjacking an operator into "Erase").
POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self' data:",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
HEADERS = {
    "Content-Security-Policy": POLICY,
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",  # pages hold customer data: not for a shared cache or "back"
}

templates = Jinja2Templates(directory=HERE / "templates")


def _ago(when: datetime | None, now: datetime | None = None) -> str:
    """'3 min ago', '2 h ago', '4 d ago': how an inbox says when, the exact time on hover."""
    if when is None:
        return "—"
    seconds = int(((now or datetime.now(UTC)) - when).total_seconds())
    future = seconds < 0
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            said = f"{seconds // size} {unit}"
            break
    else:
        said = "seconds" if future else "just now"
        return f"in {said}" if future else said
    return f"in {said}" if future else f"{said} ago"


def _when(value: datetime | None) -> str:
    return "—" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _time(value: datetime | None, text: str, style: str, cls: str = "") -> Markup:
    """A ``<time>`` the page's script shows in the viewer's own zone, named (one rule with the
    chat page); UTC, said so, without script."""
    if value is None:
        return Markup("—")
    at = value.astimezone(UTC)
    return Markup(
        '<time{cls} datetime="{iso}" data-local="{style}" title="{utc}">{text}</time>'
    ).format(
        cls=Markup(f' class="{cls}"') if cls else "",
        iso=at.isoformat().replace("+00:00", "Z"),
        style=style,
        utc=_when(at),
        text=text,
    )


def _local(value: datetime | None, style: str = "full") -> Markup:
    """An exact time: '2026-12-04 19:20 GMT+1' where the viewer is (style 'short': 'Dec 4,
    19:20 GMT+1', for a transcript)."""
    return _time(value, _when(value) if style == "full" else _short(value), style)


def _ago_time(value: datetime | None, cls: str = "muted") -> Markup:
    """'3 min ago', with the exact local time on hover."""
    return _time(value, _ago(value), "ago", cls)


def _short(value: datetime | None) -> str:
    return "—" if value is None else value.astimezone(UTC).strftime("%b %d, %H:%M UTC")


def _thousands(value: int) -> str:
    return f"{value:,}"


templates.env.filters["ago"] = _ago
templates.env.filters["channel"] = channel_names.label
templates.env.filters["channel_title"] = channel_names.title
templates.env.filters["when"] = _when
templates.env.filters["thousands"] = _thousands
templates.env.filters["local"] = _local
templates.env.filters["ago_time"] = _ago_time


def page(
    request: Request, name: str, context: dict[str, Any] | None = None, *, status: int = 200
) -> HTMLResponse:
    """A template with what every console page shows: who is signed in, the form token, and
    the one message the last action left."""
    shown = {
        "operator": signed_in_name(request),
        "csrf": csrf_token(request),
        "flash": take_flash(request),
        "path": request.url.path,
        **(context or {}),
    }
    response = templates.TemplateResponse(request, name, shown, status_code=status)
    response.headers.update(HEADERS)
    return response
