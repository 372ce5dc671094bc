"""``dormouse timeouts list|set|unset|history|recompute``."""

from __future__ import annotations

import getpass
import sys
import time
from typing import Any

import click
from pydantic import ValidationError

from api.timeout_routes import PolicyIn, scope_view
from conversations.channel_names import CHANNEL_NAMES
from conversations.db import get_engine, session_factory, transaction
from conversations.settings import get_settings
from conversations.timeout_store import (
    delete_policy,
    describe_effect,
    effect_of,
    history,
    load_policies,
    policy_as_dict,
    recompute_all,
    set_policy,
)
from conversations.timeouts import Scope, format_duration
from conversations.types import utcnow


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


@click.group()
def timeouts() -> None:
    """Inactivity timeout policies (durations like 90s, 30m, 24h, 7d, or never)."""


@timeouts.command("list")
def list_() -> None:
    settings = get_settings()
    with session_factory()() as session:
        policies = load_policies(session)
    click.echo(
        "shipped defaults: "
        + ", ".join(
            f"{ch or 'other'} {format_duration(p.inactivity)}"
            for ch, p in settings.default_policies().items()
        )
    )
    if not policies:
        click.echo("no operator policies")
    for scope, policy in sorted(policies.items(), key=lambda i: (i[0].service, i[0].channel)):
        v = scope_view(scope, policy)
        extra = ""
        if v["nudge_before"]:
            extra += f", nudge {v['nudge_before']} before: {v['nudge_message']!r}"
        if v["closing_message"]:
            extra += f", closing message: {v['closing_message']!r}"
        click.echo(f"{v['scope']}: {v['inactivity']}{extra}")


@timeouts.command("set")
@click.argument("inactivity")
@click.option("--service", default=None, help="scope: one service (agent)")
@click.option(
    "--channel", type=click.Choice(CHANNEL_NAMES), default=None, help="scope: one channel"
)
@click.option("--nudge-before", default=None, help="send a nudge this long before closing")
@click.option("--nudge-message", default=None)
@click.option("--closing-message", default=None, help="sent when closing for inactivity")
@click.option("--no-nudge", is_flag=True, help="remove the scope's nudge")
@click.option("--no-closing-message", is_flag=True, help="remove the scope's closing message")
def set_(
    inactivity: str,
    service: str | None,
    channel: str | None,
    nudge_before: str | None,
    nudge_message: str | None,
    closing_message: str | None,
    no_nudge: bool,
    no_closing_message: bool,
) -> None:
    """Set INACTIVITY for a scope (no --service/--channel: the global default).

    What is not given is kept: a scope's nudge and closing message stay until changed, or
    removed with --no-nudge / --no-closing-message.
    """
    scope = Scope(service or "", channel or "")
    with session_factory()() as session:
        current = load_policies(session).get(scope)
    if current is not None:
        if nudge_before is None and not no_nudge and current.nudge_before is not None:
            nudge_before = format_duration(current.nudge_before)
        if nudge_message is None and not no_nudge:
            nudge_message = current.nudge_message
        if closing_message is None and not no_closing_message:
            closing_message = current.closing_message
    if no_nudge:
        nudge_before = nudge_message = None
    if no_closing_message:
        closing_message = None
    try:
        body = PolicyIn(
            service=service,
            channel=channel,
            inactivity=inactivity,
            nudge_before=nudge_before,
            nudge_message=nudge_message,
            closing_message=closing_message,
        )
    except ValidationError as exc:
        said = (str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise click.BadParameter("; ".join(said)) from None
    policy = body.policy()
    defaults = get_settings().default_policies()
    with transaction() as session:
        now = utcnow()
        effect = effect_of(session, scope, policy, defaults=defaults, now=now)
        old = set_policy(session, scope, policy, actor=_actor(), now=now)
    click.echo(f"{scope.describe()}: {_changes(policy_as_dict(old), policy_as_dict(policy))}")
    click.echo(describe_effect(effect))
    _recompute(scope)


def _changes(old: dict[str, Any] | None, new: dict[str, Any] | None) -> str:
    """Every field that changed, old → new; a policy set or unset where there was none: its
    inactivity, then the nudge and closing message it brings or takes."""
    if old is None or new is None:
        before = (old or {}).get("inactivity", "unset")
        after = (new or {}).get("inactivity", "unset")
        brought = [f"{k} {v!r}" for k, v in (new or old or {}).items() if k != "inactivity" and v]
        return "; ".join([f"{before} → {after}", *brought])
    changed = [f"{k} {old.get(k)!r} → {new.get(k)!r}" for k in new if old.get(k) != new.get(k)]
    return "; ".join(changed) or "unchanged"


@timeouts.command("unset")
@click.option("--service", default=None)
@click.option("--channel", type=click.Choice(CHANNEL_NAMES), default=None)
def unset(service: str | None, channel: str | None) -> None:
    """Remove the policy of a scope; the next less specific one applies."""
    scope = Scope(service or "", channel or "")
    with transaction() as session:
        old = delete_policy(session, scope, actor=_actor(), now=utcnow())
    if old is None:
        raise click.ClickException(f"no timeout policy for {scope.describe()}")
    click.echo(f"{scope.describe()}: {format_duration(old.inactivity)} → unset")
    _recompute(scope)


@timeouts.command("history")
@click.option("--limit", type=int, default=50, show_default=True)
def history_(limit: int) -> None:
    with session_factory()() as session:
        changes = history(session, limit)
    if not changes:
        click.echo("no changes recorded")
    for c in changes:
        when = f"{c.changed_at:%Y-%m-%d %H:%M:%S}Z"
        scope = Scope(c.service, c.channel).describe()
        click.echo(f"{when}  {c.actor:16}  {scope}: {_changes(c.old, c.new)}")


@timeouts.command("recompute")
@click.option("--service", default=None)
@click.option("--channel", type=click.Choice(CHANNEL_NAMES), default=None)
def recompute(service: str | None, channel: str | None) -> None:
    """Recompute the deadlines of the open conversations a scope governs (default: all)."""
    _recompute(Scope(service or "", channel or ""))


# Not a terminal (a log file, a pipe): a plain progress line at most this often.
PLAIN_PROGRESS_EVERY_SECONDS = 5.0


def _recompute(scope: Scope) -> None:
    # One line rewritten in place on a terminal. In a log file a carriage return makes one
    # unreadable line of every update, and a line per batch of 1,000 is noise: plain lines,
    # every few seconds, so a long run still shows it is moving.
    live = sys.stdout.isatty()
    last_line_at = time.monotonic()

    def progress(total: int) -> None:
        nonlocal last_line_at
        line = f"recomputing deadlines: {total} open conversation(s)"
        if live:
            click.echo(f"\r{line}", nl=False)
        elif time.monotonic() - last_line_at >= PLAIN_PROGRESS_EVERY_SECONDS:
            click.echo(line)
            last_line_at = time.monotonic()

    defaults = get_settings().default_policies()
    total = recompute_all(get_engine(), scope, defaults=defaults, progress=progress)
    done = f"recomputed deadlines of {total} open conversation(s) ({scope.describe()})"
    click.echo(f"\r{done}" if live else done)
