"""``dormouse``: run Dormouse (all in one, or each part alone) and look at what it holds."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click
import httpx
from pydantic import ValidationError

from cli.logs import (
    FORMATS,
    configure_logging,
    effective_log_level,
    keep_celery_off_logging,
    log_format,
    set_process_name,
    uvicorn_log_config,
)
from conversations.addresses import normalize_address
from conversations.channel_names import CHANNEL_NAMES
from conversations.data_dir import make_dir, make_private, use_private_umask
from conversations.errors import ConfigurationError, DormouseError, InvalidAddress
from conversations.metrics_serving import multiprocess_dir, private_dir, use_fresh_dir
from conversations.settings import Settings, get_settings
from conversations.settings_errors import EXIT_CONFIGURATION, explain, typed_name
from conversations.states import ConversationStatus, OutboxStatus

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from agent.catalog import AgentCatalog


# The commands whose processes count work into a metrics directory (conversations/metrics.py).
WORKING_COMMANDS = ("api", "worker", "beat")


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigurationProblem(click.ClickException, ConfigurationError):
    """A setting this process cannot run with: one line, and the status `up` does not
    restart (a restart would meet the same setting)."""

    exit_code = EXIT_CONFIGURATION

    def show(self, file: Any = None) -> None:
        click.echo(f"dormouse: {self.format_message()}", err=True)


@click.group()
@click.version_option(package_name="dormouse", prog_name="dormouse")
@click.option("--log-level", default="INFO", show_default=True, envvar="LOG_LEVEL")
@click.option(
    "--log-format",
    type=click.Choice(FORMATS, case_sensitive=False),
    default="text",
    show_default=True,
    envvar="LOG_FORMAT",
    help="text: readable lines; json: one JSON object per line",
)
def cli(log_level: str, log_format: str) -> None:
    """Dormouse: asynchronous AI conversations over SMS, email and chat."""
    # Both log every request at INFO (the Twilio SDK about 13 lines per SMS): noise, not news.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("twilio.http_client").setLevel(logging.WARNING)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    if log_level.upper() == "INFO":
        # A line per task received and succeeded, and per beat tick (every 15 s even when
        # idle): noise at INFO; failures still log. LOG_LEVEL=DEBUG brings them back.
        for chatty in ("celery.app.trace", "celery.worker.strategy", "celery.beat"):
            logging.getLogger(chatty).setLevel(logging.WARNING)
    if log_level.upper() not in LOG_LEVELS:
        raise ConfigurationProblem(
            f"{typed_name('log_level')}={log_level!r}: accepts {', '.join(LOG_LEVELS)}"
        )
    configure_logging(log_level, log_format.lower())
    # Owner-only files for this command and every process it starts (conversations/data_dir.py).
    use_private_umask()
    settings = get_settings()
    if settings.data_dir.is_dir():
        make_private(settings.data_dir)  # one left open by an earlier version: say so, close it
    command = click.get_current_context().invoked_subcommand
    set_process_name(command or "dormouse")
    if command in WORKING_COMMANDS and not multiprocess_dir():
        # Before anything imports prometheus_client: it picks multiprocess mode on import.
        # Under `dormouse up` the directory is set already (one for all its processes).
        use_fresh_dir(private_dir(settings.data_dir, command))
    if settings.dormouse_agents or settings.model or settings.model_base_url:
        # Every process checks the business's agents at start-up: a typo fails here, in one
        # line, not on the first customer's message. (Unset: nothing to check, no import cost.)
        load_agents_or_exit(settings)


def load_agents_or_exit(settings: Settings) -> AgentCatalog:
    from agent.catalog import load_agents

    try:
        return load_agents(settings)
    except ConfigurationError as exc:
        raise ConfigurationProblem(str(exc)) from None


@cli.command()
def agents() -> None:
    """List each service with its agent, model and tools (from DORMOUSE_AGENTS and MODEL*)."""
    settings = get_settings()
    catalog = load_agents_or_exit(settings)
    if settings.dormouse_agents:
        click.echo(
            f"DORMOUSE_AGENTS={settings.dormouse_agents}; "
            "a service it does not name gets the default agent"
        )
    else:
        click.echo("DORMOUSE_AGENTS is not set: every service gets the default agent")
    for info in catalog.services(settings):
        click.echo(f"  {info.line()}")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=None, help="API port (default: PORT or 8000)")
@click.option(
    "--concurrency", type=int, default=2, show_default=True, help="delivery worker processes"
)
@click.option(
    "--turn-concurrency", type=int, default=200, show_default=True, help="turns held at once"
)
def up(host: str, port: int | None, concurrency: int, turn_concurrency: int) -> None:
    """Run broker, migrations, API, worker and beat in the foreground (embedded by default)."""
    from cli.supervisor import run_up

    settings = get_settings()
    # The whole configuration before any child starts: a child refused it would only be
    # restarted into the same refusal.
    for role in ("api", "worker"):
        _require_shared_secrets(role)
    catalog = load_agents_or_exit(settings)
    agents = [info.line() for info in catalog.services(settings)]
    sys.exit(run_up(settings, host, port or settings.port, concurrency, agents, turn_concurrency))


@cli.command()
def migrate() -> None:
    """Create or upgrade the database schema."""
    from conversations.migrate import migrate as run_migrations

    settings = get_settings()
    run_migrations(settings)
    click.echo(f"migrated {settings.effective_database_url}")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=None, help="default: PORT or 8000")
@click.option("--workers", type=int, default=1, show_default=True)
def api(host: str, port: int | None, workers: int) -> None:
    """Run the HTTP API alone."""
    import uvicorn

    # Secrets generated into DATA_DIR suit one machine; behind a load balancer every API
    # would make its own, and a client's key would work on one machine in N.
    _require_shared_secrets("api")
    settings = get_settings()
    proxies = settings.trusted_proxy_list
    uvicorn.run(
        "api.main:app",
        host=host,
        port=port or settings.port,
        workers=workers,
        log_level="info",
        access_log=False,
        # X-Forwarded-For/-Proto only from TRUSTED_PROXIES: uvicorn's default trusts them
        # from loopback, so anyone reaching the port from this host (or through a proxy
        # that passes the header on) could pick the address the sign-in limit counts.
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies,
        # JSON: uvicorn's lines go through our root handler instead of its own text ones.
        log_config=uvicorn_log_config(),
    )


@cli.command()
@click.option(
    "--queues",
    "role",
    type=click.Choice(["turns", "deliveries", "all"]),
    default="all",
    show_default=True,
    help="turns: agent turns only; deliveries: replies, sweeps and wrap-ups; all: both in one",
)
@click.option(
    "--turn-concurrency",
    type=click.IntRange(1, 1000),
    default=200,
    show_default=True,
    help="turns one worker holds at once (threads waiting on the model; turns and all)",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    help="processes (or threads) of a deliveries worker, or of a prefork pool",
)
@click.option(
    "--pool",
    default=None,
    help="Celery pool (default: threads when an agent waits on a model, else prefork)",
)
@click.option("--hostname", default=None, help="Celery node name (unique per worker)")
def worker(
    role: str, turn_concurrency: int, concurrency: int, pool: str | None, hostname: str | None
) -> None:
    """Run a Celery worker alone. Run as many as you like.

    A turn waits seconds on its model and uses almost no CPU, so a turns worker holds many at
    once in threads (a turn never holds a database connection while it waits). Deliveries,
    sweeps and wrap-ups get their own worker, so a backlog of slow turns never delays a reply
    already committed, a conversation closing, or the redrive: run one of each
    (`dormouse up` does), or `--queues all` for a small installation.
    """
    from workers.app import QUEUES_OF

    _require_shared_secrets("worker")
    if pool is None:
        pool = "prefork" if role == "deliveries" or not _waits_on_models() else "threads"
    if pool == "solo":
        concurrency = 1
    elif pool == "threads" and role != "deliveries":
        concurrency = turn_concurrency
    argv = [
        "worker",
        f"--concurrency={concurrency}",
        f"--pool={pool}",
        f"--queues={','.join(QUEUES_OF[role])}",
        f"--loglevel={effective_log_level()}",
        # Gossip, mingle and heartbeats are broker subscriptions and events nothing here reads.
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    if hostname or role != "all":
        # Distinct node names: a turn and a delivery worker on one machine are two nodes.
        argv.append(f"--hostname={hostname or role + '@%h'}")
    set_process_name(f"worker-{role}")
    _serve_metrics_port()
    sys.exit(run_celery(argv))


def _serve_metrics_port() -> None:
    """A worker or beat alone serves its metrics on METRICS_PORT (its pool children's too)."""
    from conversations.metrics_serving import serve_port

    port = get_settings().metrics_port
    if port:
        serve_port(port)


def _require_shared_secrets(role: str) -> None:
    missing = get_settings().unshared_secrets(role)
    if missing:
        raise ConfigurationProblem(
            f"outside embedded mode (DATABASE_URL is set) set {' and '.join(missing)}, the "
            "same on every machine: generated ones would differ from machine to machine"
        )


def _waits_on_models() -> bool:
    """Whether any service's agent waits on a model. Only the offline agent does not: its turns
    are all CPU, so a process per core (prefork) serves them better than threads."""
    from agent.offline import OfflineAgent

    catalog = load_agents_or_exit(get_settings())
    agents = (catalog.default, *catalog.agents.values())
    return any(not isinstance(agent, OfflineAgent) for agent in agents)


def run_celery(argv: list[str]) -> int:
    """Run a ``celery`` subcommand on Dormouse's app and return its exit status.

    Not ``app.worker_main``/``app.start``: they drop the status, so a worker that died of an
    unrecoverable error exited 0 and no restart-on-failure supervisor restarted it.
    """
    from celery.bin.celery import celery

    from conversations.broker import READY_FILE_ENV

    options = ["--app=workers.app:app"]
    if log_format() == "json":
        keep_celery_off_logging()
        # Its start-up banners are printed, not logged: a log shipper would get non-JSON.
        options.append("--quiet")
    elif os.environ.get(READY_FILE_ENV):
        # Under `dormouse up`, whose own banner says what runs: Celery's would bury it.
        options.append("--quiet")
    status = celery.main(args=[*options, *argv], standalone_mode=False)
    return status if isinstance(status, int) else 0


@cli.command()
def beat() -> None:
    """Run the beat scheduler alone. Exactly one per deployment (sweeps tolerate two)."""
    settings = get_settings()
    make_dir(settings.data_dir)
    schedule = settings.data_dir / "celerybeat-schedule"
    _serve_metrics_port()
    sys.exit(run_celery(["beat", f"--schedule={schedule}", f"--loglevel={effective_log_level()}"]))


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
            f"{r.inbound_count:>7}  {_ago(r.updated_at)}"
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
        found = _resolve(session, Conversation, conversation_id, "conversation")
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
        f"  customer {detail.customer_id}, {_count(detail.turn_count, 'turn')}, "
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
            f"{_count(usage.model_requests, 'model request')}"
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
        found = _resolve(session, Conversation, conversation_id, "conversation")
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
        found = _resolve(session, Customer, customer_id, "customer")
        held = session.scalar(
            select(func.count()).select_from(Conversation).where(Conversation.customer_id == found)
        )
    if not yes:
        click.confirm(
            f"erase customer {found} and their {_count(held or 0, 'conversation')}?", abort=True
        )
    if not erase(get_engine(), found):  # erased by someone else since it was resolved
        raise click.ClickException(f"no customer {found}")
    from conversations.wakeup import CeleryWaker, Produced, publish

    publish(CeleryWaker(), Produced.of(other_events=True))  # customer.erased, to webhooks
    click.echo(f"erased customer {found} ({_count(held or 0, 'conversation')})")


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
            f"{_ago(r.updated_at)}  conversation {short(r.conversation_id)}"
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


@cli.group()
def simulate() -> None:
    """Send a provider webhook to a running Dormouse, signed as the provider would."""


@simulate.command("sms")
@click.option("--from", "sender", required=True, help="customer phone number")
@click.option("--to", "recipient", default="+15550006666", show_default=True)
@click.option("--url", default=None, help="API base URL (default: http://127.0.0.1:PORT)")
@click.option(
    "--wait",
    type=float,
    default=10.0,
    show_default=True,
    help="seconds to wait for the reply (0: do not)",
)
@click.argument("text")
def simulate_sms(sender: str, recipient: str, url: str | None, wait: float, text: str) -> None:
    """Post TEXT as an inbound SMS, signed like Twilio with the webhook auth token."""
    from twilio.request_validator import RequestValidator

    from channels.sms.webhooks import CONVERSATION_HEADER, REPLY_HEADER
    from cli.supervisor import _read_state, api_base

    settings = get_settings()
    try:
        # A number typed here must be one a customer could text from, as on `dormouse send`.
        sender = normalize_address("phone", sender, settings.default_region)
    except InvalidAddress as exc:
        raise click.BadParameter(str(exc), param_hint="'--from'") from None
    running = _read_state(settings) or {}
    base = url.rstrip("/") if url else api_base(settings)
    path = "/webhooks/twilio/sms"
    params = {
        "MessageSid": "SM" + uuid.uuid4().hex,
        "AccountSid": settings.twilio_account_sid or "AC" + "0" * 32,
        "From": sender,
        "To": recipient,
        "Body": text,
        "NumMedia": "0",
    }
    # Sign the URL the server verifies: PUBLIC_URL, which `dormouse up` sets to its own address.
    public = running.get("public_url") or (base if url else settings.public_url)
    signed_url = public.rstrip("/") + path
    signature = RequestValidator(settings.webhook_auth_token()).compute_signature(
        signed_url, params
    )
    watch = _ReplyWatch(base, settings)
    answer = _post_webhook(base, path, data=params, headers={"X-Twilio-Signature": signature})
    conversation = answer.headers.get(CONVERSATION_HEADER)
    if conversation:
        click.echo(f"conversation {conversation}")
    reply = answer.headers.get(REPLY_HEADER)
    if reply == "none":
        click.echo("no reply is coming: STOP, START and an opted-out number get none")
        return
    if reply == "held":
        click.echo(
            f"held: no turn runs until an operator releases it "
            f"(`dormouse conversations release {conversation}`)"
        )
        return
    watch.print_replies(to=sender, wait=wait)


@simulate.command("email")
@click.option("--from", "sender", required=True, help="customer email address")
@click.option("--to", "recipient", default="support@localhost", show_default=True)
@click.option("--subject", default="Hello", show_default=True)
@click.option("--in-reply-to", "in_reply_to", default=None, help="a Message-ID to answer")
@click.option("--url", default=None, help="API base URL (default: http://127.0.0.1:PORT)")
@click.option(
    "--wait",
    type=float,
    default=10.0,
    show_default=True,
    help="seconds to wait for the reply (0: do not)",
)
@click.option(
    "--forged",
    is_flag=True,
    help="leave out the receiving service's DMARC pass: the mail is held (EMAIL_REQUIRE_AUTH)",
)
@click.argument("text")
def simulate_email(
    sender: str,
    recipient: str,
    subject: str,
    in_reply_to: str | None,
    url: str | None,
    wait: float,
    forged: bool,
    text: str,
) -> None:
    """Post TEXT as an inbound email (raw MIME), authenticated with EMAIL_INBOUND_SECRET.

    It carries an Authentication-Results header saying DMARC passed, as a receiving service
    would write it (authserv-id dormouse-simulate: add it to EMAIL_AUTHSERV_IDS if you set
    that); --forged leaves it out."""
    from email.message import EmailMessage
    from email.utils import format_datetime, make_msgid

    from cli.supervisor import api_base
    from conversations.types import utcnow

    settings = get_settings()
    base = url.rstrip("/") if url else api_base(settings)
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = sender, recipient, subject
    mail["Date"] = format_datetime(utcnow())
    mail["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or "localhost")
    if not forged:
        domain = sender.rpartition("@")[2].rstrip(">").strip()
        mail["Authentication-Results"] = f"dormouse-simulate; dmarc=pass header.from={domain}"
    if in_reply_to:
        reference = in_reply_to if in_reply_to.startswith("<") else f"<{in_reply_to}>"
        mail["In-Reply-To"] = mail["References"] = reference
    mail.set_content(text)
    watch = _ReplyWatch(base, settings)
    answer = _post_webhook(
        base,
        "/webhooks/email",
        content=bytes(mail),
        headers={
            "Content-Type": "message/rfc822",
            "Authorization": f"Bearer {settings.email_secret()}",
        },
    )
    if answer.json().get("status") == "held":
        click.echo(
            "held: no reply will come until an operator releases it "
            f"(`dormouse conversations release {answer.json()['conversation_id']}`)"
        )
        return
    watch.print_replies(to=sender.rpartition("<")[2].rstrip(">").strip(), wait=wait)


@simulate.command("chat")
@click.option("--user", "user_id", required=True, help="the chat user id")
@click.option("--service", default=None, help="the service (default: DEFAULT_SERVICE)")
@click.option("--url", default=None, help="API base URL (default: http://127.0.0.1:PORT)")
@click.option(
    "--wait",
    type=float,
    default=10.0,
    show_default=True,
    help="seconds to wait for the reply (0: do not)",
)
@click.argument("text")
def simulate_chat(
    user_id: str, service: str | None, url: str | None, wait: float, text: str
) -> None:
    """Post TEXT as a chat message, signed (Standard Webhooks) with CHAT_WEBHOOK_SECRET."""
    from cli.supervisor import api_base
    from conversations.standard_webhooks import sign

    settings = get_settings()
    base = url.rstrip("/") if url else api_base(settings)
    payload: dict[str, Any] = {"id": "sim_" + uuid.uuid4().hex, "user_id": user_id, "text": text}
    if service:
        payload["service"] = service
    body = json.dumps(payload)
    headers = sign(settings.chat_secret(), "sim_" + uuid.uuid4().hex, body)
    watch = _ReplyWatch(base, settings)
    _post_webhook(
        base,
        "/webhooks/chat",
        content=body,
        headers={**headers, "content-type": "application/json"},
    )
    watch.print_replies(to=user_id.strip(), wait=wait)


class _ReplyWatch:
    """Prints the replies to a simulated message, as the customer would see them: the outbox
    rows for that address newer than the ones there before it was sent."""

    def __init__(self, base: str, settings: Settings) -> None:
        self.base = base
        self.headers = {"Authorization": f"Bearer {next(iter(settings.api_keys()))}"}
        self.seen = {row["id"] for row in self._outbox()}

    def _outbox(self) -> list[dict[str, Any]]:
        try:
            answer = httpx.get(
                self.base + "/v1/outbox", params={"limit": 50}, headers=self.headers, timeout=5
            )
        except httpx.HTTPError:
            return []
        rows: list[dict[str, Any]] = answer.json() if answer.status_code == 200 else []
        return rows

    def print_replies(self, *, to: str, wait: float) -> None:
        if wait <= 0:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            new = [r for r in self._outbox() if r["id"] not in self.seen]
            mine = [r for r in new if r["to_address"].lower() == to.strip().lower()]
            if mine:
                for row in sorted(mine, key=lambda r: r["id"]):
                    click.echo(f"reply: {row['body']}")
                return
            time.sleep(0.3)
        click.echo(f"no reply within {wait:g}s yet: `dormouse outbox` shows it when it comes")


def _post_webhook(base: str, path: str, **request: Any) -> httpx.Response:
    """POST like a provider would, print the answer, exit 1 on a refusal."""
    try:
        response = httpx.post(base + path, timeout=15, **request)
    except httpx.ConnectError:
        raise click.ClickException(
            f"nothing answers at {base}: is Dormouse running (`make up`)? Use --url otherwise."
        ) from None
    click.echo(f"{response.status_code} {response.text}")
    if response.status_code in (401, 403):
        data_dir = get_settings().data_dir
        click.echo(
            f"dormouse: refused: simulate signs with the secrets under DATA_DIR={data_dir}; "
            "run it with the DATA_DIR of the running `dormouse up` (or from its directory)",
            err=True,
        )
    if response.status_code >= 400:
        sys.exit(1)
    return response


def _resolve(session: Session, model: Any, prefix: str, noun: str) -> uuid.UUID:
    """The id a user typed (a unique prefix or a full UUID); one line when it names none."""
    from conversations.short_ids import ShortIdError, resolve

    try:
        return resolve(session, model, prefix, noun)
    except ShortIdError as exc:
        raise click.ClickException(str(exc)) from None


def _ago(when: datetime) -> str:
    return f"{when:%Y-%m-%d %H:%M:%S}Z"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _register() -> None:
    from cli.operators import operators
    from cli.timeouts import timeouts
    from cli.webhooks import webhooks

    cli.add_command(timeouts)
    cli.add_command(operators)
    cli.add_command(webhooks)


_register()


def main() -> None:
    from sqlalchemy.exc import OperationalError

    try:
        cli(prog_name="dormouse")
    except ValidationError as exc:
        for line in explain(exc):
            click.echo(f"dormouse: {line}", err=True)
        sys.exit(EXIT_CONFIGURATION)
    except OperationalError as exc:
        # Most often: run from another directory, so the default DATA_DIR (./var) is not
        # the one `make up` uses. Say where we looked instead of a page of traceback.
        settings = get_settings()
        reason = str(exc.orig).splitlines()[0] if exc.orig is not None else str(exc)
        click.echo(
            f"dormouse: cannot use the database {settings.effective_database_url} "
            f"(DATA_DIR={settings.data_dir}): {reason}. Run from the directory `make up` runs "
            "in, or set DATA_DIR / DATABASE_URL.",
            err=True,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
