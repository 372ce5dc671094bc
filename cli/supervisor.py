"""``dormouse up``: broker (embedded unless BROKER_URL is set), migrations, then API, a turn
worker, a delivery worker and beat as child processes in the foreground. Ctrl-C stops them
all. A child that exits is restarted with backoff, saying why; only one that keeps crashing
fast stops everything.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Protocol, TextIO

import click

from cli.embedded import EmbeddedBroker
from cli.logs import effective_log_level
from cli.restarts import RestartPolicy
from conversations.migrate import migrate
from conversations.settings import Settings
from conversations.wal import truncate_wal


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _hold_data_dir(settings: Settings) -> TextIO:
    """One ``dormouse up`` per DATA_DIR: a second would replace the first one's broker socket."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    lock = (settings.data_dir / "up.lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        running = _read_state(settings)
        where = f" (API on {running['api']})" if running else ""
        raise click.ClickException(
            f"another `dormouse up` is running with DATA_DIR={settings.data_dir}{where}; "
            "stop it, or set DATA_DIR to run a second one"
        ) from None
    return lock


def state_file(settings: Settings) -> Path:
    return settings.data_dir / "up.json"


def _read_state(settings: Settings) -> dict[str, str] | None:
    try:
        state: dict[str, str] = json.loads(state_file(settings).read_text())
        return state
    except (OSError, ValueError):
        return None


def run_up(
    settings: Settings,
    host: str,
    port: int,
    concurrency: int,
    agents: Sequence[str] = (),
    turn_concurrency: int = 200,
) -> int:
    lock = _hold_data_dir(settings)
    if not port_is_free(port, host):
        lock.close()
        raise click.ClickException(f"port {port} is in use: choose another with --port or PORT")
    broker: EmbeddedBroker | None = None
    env = dict(os.environ, DATA_DIR=str(settings.data_dir), PORT=str(port))
    if settings.uses_embedded_broker:
        broker = EmbeddedBroker(settings.embedded_broker_socket)
        broker.start()
    env["BROKER_URL"] = settings.effective_broker_url
    # One machine: the secrets generated under DATA_DIR are the children's, said explicitly.
    env["DORMOUSE_API_KEYS"] = settings.dormouse_api_keys or "local:" + next(
        iter(settings.api_keys())
    )
    env["EMAIL_INBOUND_SECRET"] = settings.email_secret()
    env["LOG_LEVEL"] = effective_log_level()  # `dormouse --log-level X up` reaches every process
    if not os.environ.get("PUBLIC_URL"):
        env["PUBLIC_URL"] = f"http://{host}:{port}"

    children: list[Child] = []
    try:
        click.echo("dormouse: migrating the database …")
        migrate(settings)
        me = [sys.executable, "-m", "cli.main"]
        commands = {
            "api": [*me, "api", "--host", host, "--port", str(port)],
            # Turns wait on models in threads; replies, sweeps and wrap-ups never queue
            # behind them in a worker of their own.
            "turn worker": [
                *me,
                "worker",
                "--queues",
                "turns",
                "--turn-concurrency",
                str(turn_concurrency),
            ],
            "delivery worker": [
                *me,
                "worker",
                "--queues",
                "deliveries",
                "--concurrency",
                str(concurrency),
            ],
            "beat": [*me, "beat"],
        }
        children = [Child(name, argv, env) for name, argv in commands.items()]
        for child in children:
            child.start()
        # `dormouse simulate` reads where this instance listens and what URL it verifies.
        state_file(settings).write_text(
            json.dumps({"api": f"http://{host}:{port}", "public_url": env["PUBLIC_URL"]})
        )
        _wait_for_api(host, port, children[0])
        _banner(settings, host, port, env["PUBLIC_URL"], broker, agents)
        restartable: list[Restartable] = [*children, *([broker] if broker else [])]
        return _supervise(restartable, RestartPolicy())
    finally:
        _stop(children)
        # Every child has exited: this is the file's last connection, so closing it removes
        # -wal and -shm, leaving one self-contained dormouse.db (nothing to do on PostgreSQL).
        truncate_wal(settings.effective_database_url)
        if broker is not None:
            broker.stop()
        state_file(settings).unlink(missing_ok=True)
        lock.close()


class Child:
    """One process `up` runs, restartable with the same command line."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name, self.argv, self.env = name, argv, env
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> None:
        # Own session: Ctrl-C reaches only us, and we stop the children in order.
        self.proc = subprocess.Popen(self.argv, env=self.env, start_new_session=True)
        self.started_at = time.monotonic()

    def exit_status(self) -> int | None:
        return None if self.proc is None else self.proc.poll()


def _wait_for_api(host: str, port: int, api: Child, timeout: float = 30.0) -> None:
    """Say "up" only once the API accepts connections (a newcomer's first command needs it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and api.exit_status() is None:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    # An API that exited or never listened: the supervisor below reports and restarts it.


def describe_exit(status: int) -> str:
    if status < 0:
        try:
            return f"was killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"was killed by signal {-status}"
    return f"exited with status {status}"


def _banner(
    settings: Settings,
    host: str,
    port: int,
    public_url: str,
    broker: EmbeddedBroker | None,
    agents: Sequence[str],
) -> None:
    key = next(iter(settings.api_keys()))
    sink = (
        "" if settings.twilio_configured else " (no Twilio credentials: replies go to the dev sink)"
    )
    lines = [
        "",
        f"Dormouse is up: API on http://{host}:{port}  (public URL {public_url})",
        f"  database: {settings.effective_database_url}",
        f"  broker:   {settings.effective_broker_url}" + (" (embedded)" if broker else ""),
        f"  API key:  {key}",
        f"  outbound SMS: {'Twilio' if settings.twilio_configured else 'dev sink'}{sink}",
        f"  outbound email: {'SMTP' if settings.smtp_url else 'dev sink (no SMTP_URL)'}",
        f"  email webhook secret: {settings.email_secret()}  (POST /webhooks/email)",
        "  agents (service: agent; tools), `dormouse agents` lists them again:",
        *(f"    {line}" for line in agents),
        "",
        "Try it (in another terminal):",
        '  .venv/bin/dormouse simulate sms --from +15555550100 "hello there"',
        '  .venv/bin/dormouse simulate sms --from +15555550100 "my name is Ada"',
        '  .venv/bin/dormouse simulate email --from ada@example.com "Where is my order?"',
        "  .venv/bin/dormouse conversations list",
        "  .venv/bin/dormouse outbox",
        f'  curl -H "Authorization: Bearer {key}" http://{host}:{port}/v1/conversations',
        "",
        "Ctrl-C stops everything.",
        "",
    ]
    click.echo("\n".join(lines))


class Restartable(Protocol):
    name: str
    started_at: float

    def start(self) -> None: ...
    def exit_status(self) -> int | None: ...


def _supervise(processes: Sequence[Restartable], policy: RestartPolicy) -> int:
    stopping = False

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    due: dict[str, float] = {}  # name -> when it restarts
    while not stopping:
        now = time.monotonic()
        for process in processes:
            status = process.exit_status()
            if status is None or process.name in due:
                continue
            delay = _restart_delay(process, status, now, policy)
            if delay is None:
                return status or 1
            due[process.name] = now + delay
        for process in processes:
            if process.name in due and due[process.name] <= now:
                del due[process.name]
                try:
                    process.start()
                except RuntimeError as exc:  # the broker did not come up: counts as a crash
                    click.echo(f"dormouse: {process.name} did not start: {exc}", err=True)
                else:
                    click.echo(f"dormouse: {process.name} restarted", err=True)
        time.sleep(0.2)
    click.echo("\ndormouse: stopping …")
    return 0


def _restart_delay(
    process: Restartable, status: int, now: float, policy: RestartPolicy
) -> float | None:
    """Say why it stopped; the delay before its restart, or None to give up."""
    ran = now - process.started_at
    delay = policy.record_exit(process.name, ran_for=ran, now=now)
    if delay is None:
        click.echo(
            f"dormouse: {process.name} {describe_exit(status)} and keeps crashing "
            f"({policy.max_fast_crashes} times within {policy.window:.0f}s, each after less "
            f"than {policy.stable_after:.0f}s); stopping everything",
            err=True,
        )
        return None
    click.echo(
        f"dormouse: {process.name} {describe_exit(status)} after {ran:.1f}s; "
        f"restarting in {delay:.0f}s",
        err=True,
    )
    return delay


def _stop(children: list[Child], timeout: float = 15.0) -> None:
    procs = [c.proc for c in children if c.proc is not None]
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # warm shutdown: running turns finish
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
