"""Looking at and acting on what Dormouse holds: ``conversations``, ``customers``, ``outbox``,
``send``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from conversations.channel_names import CHANNEL_NAMES
from conversations.errors import DormouseError
from conversations.settings import get_settings
from conversations.states import ConversationStatus, OutboxStatus

if TYPE_CHECKING:
    pass

from cli.root import ago, cli, count, resolve_id


@cli.group()
def conversations() -> None:
    """List and show conversations."""


@conversations.command("list")
@click.option(
    "--status",
    type=click.Choice(["open", *(s.value for s in ConversationStatus)]),
    help="open: every status but finished",
)
@click.option("--channel")
@click.option("--address")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def conversations_list(
    status: str | None, channel: str | None, address: str | None, limit: int, as_json: bool
) -> None:
    from conversations.addresses import normalize_any
    from conversations.db import session_factory
    from conversations.short_ids import short
    from conversations.views import list_conversations

    settings = get_settings()
    if address:
        address = normalize_any(address, settings.default_region)
    with session_factory()() as session:
        rows = list_conversations(
            session,
            status=status,
            channel=channel,
            address=address,
            limit=limit,
        )
    if as_json:
        click.echo(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
        return
    if not rows:
        click.echo("no conversations")
        return
    click.echo(
        f"{'id':8}  {'status':18}  {'service':10}  {'channel':7}  {'address':16}  "
        f"{'inbound':>7}  updated"
    )
    for r in rows:
        status_text = r.status + (f"/{r.finish_reason}" if r.finish_reason else "")
        click.echo(
            f"{short(r.id):8}  {status_text:18}  {r.service:10}  {r.channel:7}  {r.address:16}  "
            f"{r.inbound_count:>7}  {ago(r.updated_at)}"
        )


@conversations.command("show")
@click.argument("conversation_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True)
def conversations_show(conversation_id: str, as_json: bool) -> None:
    """Show a conversation: its messages, turns and tool calls. ID: 6+ leading hex digits."""
    from conversations.db import session_factory
    from conversations.models import Conversation
    from conversations.views import conversation_detail

    with session_factory()() as session:
        found = resolve_id(session, Conversation, conversation_id, "conversation")
        detail = conversation_detail(session, found)
    if detail is None:
        raise click.ClickException(f"no conversation {conversation_id}")
    if as_json:
        click.echo(detail.model_dump_json(indent=2))
        return
    why = detail.finish_reason or detail.handoff_reason or detail.held_reason
    reason = f" ({why})" if why else ""
    click.echo(f"conversation {detail.id}: {detail.status}{reason}")
    click.echo(f"  service {detail.service}, channel {detail.channel}, address {detail.address}")
    click.echo(
        f"  customer {detail.customer_id}, {count(detail.turn_count, 'turn')}, "
        f"started {detail.created_at:%Y-%m-%d %H:%M:%S}Z"
    )
    if detail.last_error:
        click.echo(f"  last error: {detail.last_error}")
    if detail.summary:
        click.echo(f"  summary: {detail.summary}")
    for m in detail.messages:
        arrow = "→" if m.direction == "outbound" else "←"
        state = m.delivery_status if m.direction == "outbound" else m.inbound_state
        if m.via_sink:
            state = "dev sink"  # written locally, sent to no one
        click.echo(f"  {m.created_at:%H:%M:%S} {arrow} {m.role:8} [{state}] {m.body}")
        if m.channel == "email" and m.provider_id:
            automatic = m.meta.get("automatic")
            note = f", automatic: {automatic}" if automatic else ""
            click.echo(f"           Message-ID <{m.provider_id}>{note}")
    if any(t.model_requests or t.tool_calls for t in detail.turns):
        usage = detail.usage
        click.echo(
            f"  usage: {usage.input_tokens} input + {usage.output_tokens} output tokens, "
            f"{count(usage.model_requests, 'model request')}"
        )
        for turn in detail.turns:
            model = f" {turn.model}" if turn.model else ""
            click.echo(
                f"  turn {turn.turn_number}: {turn.agent}{model}, "
                f"{turn.input_tokens}+{turn.output_tokens} tokens"
            )
            for call in turn.tool_calls:
                outcome = f"error: {call.error}" if call.error else call.result
                args = json.dumps(call.arguments)
                again = ", replayed from the journal" if call.replayed else ""
                click.echo(f"    {call.name}({args}) → {outcome}  [{call.duration_ms} ms{again}]")


@conversations.command("release")
@click.argument("conversation_id", metavar="ID")
def conversations_release(conversation_id: str) -> None:
    """Let the agent answer a held conversation (like POST /v1/conversations/{id}/release).

    A conversation is held when its mail failed authentication (EMAIL_REQUIRE_AUTH) or its
    sender went over a spending limit (LIMIT_*); `conversations list --status held` lists them.
    """
    from conversations.db import session_factory, transaction
    from conversations.errors import TransitionRefused
    from conversations.lifecycle import release
    from conversations.models import Conversation
    from conversations.types import utcnow
    from conversations.wakeup import CeleryWaker, Produced, publish

    settings = get_settings()
    with session_factory()() as session:
        found = resolve_id(session, Conversation, conversation_id, "conversation")
    try:
        with transaction() as session:
            waiting = release(session, found, now=utcnow(), defaults=settings.default_policies())
    except TransitionRefused as exc:
        raise click.ClickException(str(exc)) from None
    publish(CeleryWaker(), Produced.of(turns=[found] if waiting else [], changed=[found]))
    click.echo(
        f"released conversation {found}: "
        + ("its waiting messages go to the agent" if waiting else "nothing was waiting")
    )


@cli.group()
def customers() -> None:
    """Erase customers (the HTTP API creates, links and reads them)."""


@customers.command("erase")
@click.argument("customer_id", metavar="ID")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
def customers_erase(customer_id: str, yes: bool) -> None:
    """Erase a customer and everything about them (like DELETE /v1/customers/{id}).

    ID: 6+ leading hex digits of the customer's id (`conversations show` prints it). Their
    addresses, conversations, messages, memory and pending outbox rows are deleted; on SQLite
    the text is gone from the database files too.
    """
    from sqlalchemy import func, select

    from conversations.db import get_engine, session_factory
    from conversations.erasure import erase
    from conversations.models import Conversation, Customer

    with session_factory()() as session:
        found = resolve_id(session, Customer, customer_id, "customer")
        held = session.scalar(
            select(func.count()).select_from(Conversation).where(Conversation.customer_id == found)
        )
    if not yes:
        click.confirm(
            f"erase customer {found} and their {count(held or 0, 'conversation')}?", abort=True
        )
    if not erase(get_engine(), found):  # erased by someone else since it was resolved
        raise click.ClickException(f"no customer {found}")
    from conversations.wakeup import CeleryWaker, Produced, publish

    publish(CeleryWaker(), Produced.of(other_events=True))  # customer.erased, to webhooks
    click.echo(f"erased customer {found} ({count(held or 0, 'conversation')})")


@cli.command()
@click.option("--status", type=click.Choice([s.value for s in OutboxStatus]))
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
def outbox(status: str | None, limit: int) -> None:
    """Show outgoing messages, newest first (dev-sink deliveries are marked)."""
    from conversations.db import session_factory
    from conversations.short_ids import short
    from conversations.views import list_outbox

    with session_factory()() as session:
        rows = list_outbox(session, status=status, limit=limit)
    if not rows:
        click.echo("outbox is empty")
        return
    for r in rows:
        where = "dev sink" if r.via_sink else (r.provider_id or "-")
        click.echo(
            f"#{r.id} {r.status:8} → {r.channel}:{r.to_address} via {where}  "
            f"{ago(r.updated_at)}  conversation {short(r.conversation_id)}"
        )
        click.echo(f"    {r.body}")
        if r.last_error:
            click.echo(f"    error: {r.last_error}")


@cli.command()
@click.option("--service", required=True)
@click.option("--channel", type=click.Choice(CHANNEL_NAMES), required=True)
@click.option("--to", "to", required=True, help="the customer's address on that channel")
@click.option("--message", default=None, help="sent as written; without it the agent writes one")
@click.option("--context", default="{}", help="JSON given to the agent")
def send(service: str, channel: str, to: str, message: str | None, context: str) -> None:
    """Start an outbound conversation (like POST /v1/conversations)."""
    from conversations.db import transaction
    from conversations.outbound import start_outbound
    from conversations.types import utcnow
    from conversations.wakeup import CeleryWaker, Produced, publish

    settings = get_settings()
    try:
        parsed = json.loads(context)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--context") from None
    if not isinstance(parsed, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--context")
    try:
        with transaction() as session:
            started = start_outbound(
                session,
                service=service,
                channel=channel,
                to=to,
                customer_id=None,
                context=parsed,
                message=message,
                now=utcnow(),
                defaults=settings.default_policies(),
                region=settings.default_region,
            )
    except DormouseError as exc:  # refused: an unknown channel, a text too long, opted out
        raise click.ClickException(str(exc)) from None
    woken = publish(
        CeleryWaker(settings=settings),
        Produced.of(deliveries=[started.outbox_id])
        if started.outbox_id is not None
        else Produced.of(turns=[started.conversation_id]),
    )
    click.echo(f"started conversation {started.conversation_id}")
    if not woken:
        click.echo("broker unreachable: the message goes out when the redrive sweep runs", err=True)
