"""``dormouse webhooks add|list|remove|rotate|test|deliveries``: event webhook endpoints,
on the database the other commands use (as ``/v1/webhooks`` does)."""

from __future__ import annotations

import json
import time
import uuid
from urllib.parse import urlsplit

import click
import httpx
from sqlalchemy import select

from cli.supervisor import api_base
from conversations import outbound_http, webhook_outbox
from conversations import webhook_endpoints as store
from conversations.db import session_factory, transaction
from conversations.errors import DormouseError
from conversations.events import WEBHOOK_TYPES
from conversations.models import Event, WebhookDelivery, WebhookEndpoint
from conversations.settings import Settings, get_settings
from conversations.types import utcnow
from conversations.wakeup import CeleryWaker


@click.group()
def webhooks() -> None:
    """Event webhook endpoints: who is told what happened, signed per Standard Webhooks."""


def _resolve(prefix: str) -> uuid.UUID:
    from conversations.short_ids import ShortIdError, resolve

    with session_factory()() as session:
        try:
            return resolve(session, WebhookEndpoint, prefix, "webhook endpoint")
        except ShortIdError as exc:
            raise click.ClickException(str(exc)) from None


def _as_the_api_runs(settings: Settings) -> Settings:
    """The settings with the port the running API answers on (``up`` may run on another
    PORT than this shell's), so "points at this API itself" is judged against that one."""
    port = urlsplit(api_base(settings)).port
    return settings.model_copy(update={"port": port}) if port else settings


@webhooks.command("add")
@click.argument("url")
@click.option(
    "--event",
    "event_types",
    multiple=True,
    type=click.Choice(WEBHOOK_TYPES),
    help="an event type it wants (repeat it); none: every type",
)
@click.option("--service", default=None, help="only this service's conversations")
@click.option("--description", default="")
def add(url: str, event_types: tuple[str, ...], service: str | None, description: str) -> None:
    """Add an endpoint; prints its id and its secret (shown this once)."""
    try:
        checked = store.check_url(url, _as_the_api_runs(get_settings()))
        with transaction() as session:
            view, secret = store.create(
                session,
                url=checked,
                event_types=list(event_types),
                service=service,
                description=description,
                now=utcnow(),
            )
    except DormouseError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"id      {view.id}")
    click.echo(f"url     {view.url}")
    click.echo(f"events  {', '.join(view.event_types) or 'all'}")
    click.echo(f"secret  {secret}   (shown once: verify signatures with it)")


@webhooks.command("list")
def list_() -> None:
    """Every endpoint: id, state, events, URL (and why it was disabled)."""
    with session_factory()() as session:
        views = store.list_all(session)
    if not views:
        click.echo("no webhook endpoints (dormouse webhooks add <url>)")
    for v in views:
        state = "enabled" if v.enabled else "DISABLED"
        events = ",".join(v.event_types) or "all"
        service = f" service={v.service}" if v.service else ""
        click.echo(f"{str(v.id)[:8]}  {state:8}  {events}{service}  {v.url}")
        if not v.enabled and v.disabled_reason:
            click.echo(f"          disabled: {v.disabled_reason}")


@webhooks.command("remove")
@click.argument("endpoint_id", metavar="ID")
def remove(endpoint_id: str) -> None:
    """Delete an endpoint and its deliveries."""
    found = _resolve(endpoint_id)
    with transaction() as session:
        store.delete(session, found)
    click.echo(f"removed webhook endpoint {found}")


@webhooks.command("rotate")
@click.argument("endpoint_id", metavar="ID")
def rotate(endpoint_id: str) -> None:
    """A new secret; the old one keeps signing beside it for 24 hours."""
    found = _resolve(endpoint_id)
    with transaction() as session:
        view, secret = store.rotate(session, found, now=utcnow())
    click.echo(f"secret  {secret}   (shown once)")
    click.echo(f"the old secret signs too until {view.previous_secret_expires_at:%Y-%m-%d %H:%M}Z")


@webhooks.command("enable")
@click.argument("endpoint_id", metavar="ID")
def enable(endpoint_id: str) -> None:
    """Re-enable a disabled endpoint: what waited for it is sent."""
    found = _resolve(endpoint_id)
    with transaction() as session:
        store.update(session, found, {"enabled": True}, now=utcnow())
    CeleryWaker().webhooks(None)
    click.echo(f"enabled webhook endpoint {found}")


@webhooks.command("deliveries")
@click.argument("endpoint_id", metavar="ID")
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
def deliveries(endpoint_id: str, limit: int) -> None:
    """The endpoint's latest deliveries: event, status, attempts, last answer, next retry; one
    that waits behind an unsettled earlier one of its conversation (order is kept) says so."""
    found = _resolve(endpoint_id)
    d = WebhookDelivery
    with session_factory()() as session:
        rows = session.execute(
            select(d, Event.type)
            .join(Event, Event.id == d.event_id)
            .where(d.endpoint_id == found)
            .order_by(d.id.desc())
            .limit(limit)
        ).all()
        unsettled = {
            (r.conversation_id, r.id)
            for r in session.scalars(
                select(d).where(d.endpoint_id == found, d.status.in_(webhook_outbox.UNSETTLED))
            )
        }
    if not rows:
        click.echo("no deliveries yet")
        return
    click.echo(f"{'id':>8}  {'event':12} {'type':24} {'status':9} tries  answer  latency  next")
    for r, event_type in rows:
        answer = r.last_status_code or (r.last_error or "-")
        ahead = [i for c, i in unsettled if c == r.conversation_id and i < r.id]
        if r.status == "pending" and ahead:
            retry = f"  waits behind #{min(ahead)}"
        elif r.status == "pending":
            retry = f"  next {r.next_attempt_at:%H:%M:%S}Z"
        else:
            retry = ""
        latency = f"{r.last_latency_ms} ms" if r.last_latency_ms is not None else "-"
        click.echo(
            f"{r.id:>8}  evt_{r.event_id:<8} {event_type:24} {r.status:9} x{r.attempts:<4} "
            f"{answer}  {latency}{retry}"
        )


@webhooks.command("test")
@click.argument("endpoint_id", metavar="ID")
def test(endpoint_id: str) -> None:
    """Post a signed ``webhook.test`` event to the endpoint now and show its answer (not
    through the event outbox: nothing is retried or recorded)."""
    from conversations.standard_webhooks import sign

    found = _resolve(endpoint_id)
    now = utcnow()
    with session_factory()() as session:
        row = store.get(session, found)
        url, secrets = row.url, store.signing_secrets(row, now)
    webhook_id = f"evt_test_{uuid.uuid4().hex[:16]}"
    body = json.dumps(
        {
            "type": "webhook.test",
            "id": webhook_id,
            "timestamp": now.isoformat().replace("+00:00", "Z"),
            "data": {"endpoint_id": str(found)},
        },
        separators=(",", ":"),
    )
    started = time.perf_counter()
    settings = get_settings()
    client = outbound_http.client(
        allow_private=settings.allow_private_targets,
        timeout=settings.webhook_timeout,
        headers={"user-agent": "Dormouse-Webhooks/1"},
    )
    try:
        with client:
            answer = client.post(
                url,
                content=body.encode(),
                headers={**sign(secrets, webhook_id, body), "content-type": "application/json"},
            )
    except outbound_http.TargetRefused as exc:
        raise click.ClickException(f"{url!r}: {exc}") from None
    except httpx.HTTPError as exc:
        raise click.ClickException(f"{url!r}: {type(exc).__name__}: {exc}") from None
    ms = (time.perf_counter() - started) * 1000
    click.echo(f"{url!r} answered {answer.status_code} in {ms:.0f} ms")
    if not answer.is_success:
        raise SystemExit(1)
