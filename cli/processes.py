"""Running Dormouse: ``up`` (all in one); ``api``, ``worker`` and ``beat`` alone; ``migrate``;
``agents``."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import click

from cli.logs import (
    effective_log_level,
    keep_celery_off_logging,
    log_format,
    set_process_name,
    uvicorn_log_config,
)
from conversations.data_dir import make_dir
from conversations.settings import get_settings

if TYPE_CHECKING:
    pass

from cli.root import ConfigurationProblem, cli, load_agents_or_exit


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
