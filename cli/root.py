"""The ``dormouse`` group: logging, the data directory's modes, the agents' check at start-up,
and what every command shares (one-line refusals, ids typed as prefixes)."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from cli.logs import (
    FORMATS,
    configure_logging,
    set_process_name,
)
from conversations.data_dir import make_private, use_private_umask
from conversations.errors import ConfigurationError
from conversations.metrics_serving import multiprocess_dir, private_dir, use_fresh_dir
from conversations.settings import Settings, get_settings
from conversations.settings_errors import EXIT_CONFIGURATION, typed_name

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


def resolve_id(session: Session, model: Any, prefix: str, noun: str) -> uuid.UUID:
    """The id a user typed (a unique prefix or a full UUID); one line when it names none."""
    from conversations.short_ids import ShortIdError, resolve

    try:
        return resolve(session, model, prefix, noun)
    except ShortIdError as exc:
        raise click.ClickException(str(exc)) from None


def ago(when: datetime) -> str:
    return f"{when:%Y-%m-%d %H:%M:%S}Z"


def count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
