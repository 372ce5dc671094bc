"""``dormouse up``: broker (embedded unless BROKER_URL is set), migrations, then API, a turn
worker, a delivery worker and beat as child processes in the foreground. Ctrl-C stops them
all, and so do SIGTERM and SIGHUP (the terminal closing). A child that exits is restarted
with backoff, saying why; only one that keeps crashing fast stops everything. None outlives
the supervisor unnoticed: see ``cli.lifeline``.
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
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Protocol, TextIO
from urllib.parse import quote

import click

from cli.embedded import EmbeddedBroker
from cli.lifeline import die_with_parent, holders
from cli.logs import effective_log_level, log_format
from cli.restarts import RestartPolicy
from conversations.broker import READY_FILE_ENV
from conversations.data_dir import make_dir, make_private
from conversations.metrics_serving import MULTIPROC_ENV, use_fresh_dir
from conversations.migrate import migrate
from conversations.settings import Settings
from conversations.settings_errors import EXIT_CONFIGURATION
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
    """One ``dormouse up`` per DATA_DIR: a second would replace the first one's broker socket.

    Every child inherits this lock (``cli.lifeline``), so it also stays held while any process
    of an earlier stack runs on after its supervisor died.
    """
    make_private(settings.data_dir)
    path = settings.data_dir / "up.lock"
    lock = path.open("a")  # not "w": truncating a lock file others hold gains nothing
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise click.ClickException(_held_message(settings, path)) from None
    return lock


def _held_message(settings: Settings, path: Path) -> str:
    where = f"DATA_DIR={settings.data_dir}"
    found = holders(path)
    if found is None:  # no /proc (macOS): name the tool that finds them
        return (
            f"{where} is held by another `dormouse up` or by processes an earlier one left "
            f"running (`lsof {path}` lists them): stop them, or set DATA_DIR to run a second one"
        )
    supervisors = [h for h in found if h.command == "up"]
    if supervisors:
        running = _read_state(settings)
        api = f", API on {running['api']}" if running else ""
        return (
            f"another `dormouse up` is running with {where} (pid {supervisors[0].pid}{api}); "
            "stop it, or set DATA_DIR to run a second one"
        )
    # Not killed for you: a PID is only a number, and these may be busy finishing turns.
    pids = " ".join(str(h.pid) for h in found)
    return (
        f"{where} is still held by processes an earlier `dormouse up` left running: "
        f"{', '.join(h.describe() for h in found)}; stop them with `kill {pids}` and run "
        "`dormouse up` again"
    )


def metrics_dir(settings: Settings) -> Path:
    return settings.data_dir / "metrics" / "up"


def state_file(settings: Settings) -> Path:
    return settings.data_dir / "up.json"


def _read_state(settings: Settings) -> dict[str, str] | None:
    try:
        state: dict[str, str] = json.loads(state_file(settings).read_text())
        return state
    except (OSError, ValueError):
        return None


def api_base(settings: Settings) -> str:
    """Where this DATA_DIR's API answers: the running ``up``'s address, else PORT on loopback."""
    running = _read_state(settings) or {}
    return (running.get("api") or f"http://127.0.0.1:{settings.port}").rstrip("/")


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
    signals = _StopSignals()
    tie = Tie(fds=(lock.fileno(),), preexec_fn=die_with_parent())
    broker: EmbeddedBroker | None = None
    env = dict(os.environ, DATA_DIR=str(settings.data_dir), PORT=str(port))
    children: list[Child] = []
    try:
        if settings.uses_embedded_broker:
            broker = EmbeddedBroker(
                settings.embedded_broker_socket, pass_fds=tie.fds, preexec_fn=tie.preexec_fn
            )
            broker.start()
        env["BROKER_URL"] = settings.effective_broker_url
        # One machine: the secrets generated under DATA_DIR are the children's, said explicitly.
        env["DORMOUSE_API_KEYS"] = settings.dormouse_api_keys or "local:" + next(
            iter(settings.api_keys())
        )
        env["EMAIL_INBOUND_SECRET"] = settings.email_secret()
        env["CHAT_WEBHOOK_SECRET"] = settings.chat_secret()
        env["LOG_LEVEL"] = effective_log_level()  # `dormouse --log-level X up` reaches all
        env["LOG_FORMAT"] = log_format()
        # One metrics directory for every process here, emptied: the API's /metrics shows
        # them all, so no process needs a port of its own (METRICS_PORT is for one per host).
        use_fresh_dir(metrics_dir(settings))
        env[MULTIPROC_ENV] = str(metrics_dir(settings))
        env.pop("METRICS_PORT", None)
        if not os.environ.get("PUBLIC_URL"):
            env["PUBLIC_URL"] = f"http://{host}:{port}"

        _say("dormouse: migrating the database …")
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
        ready_dir = settings.data_dir / "ready"
        make_dir(ready_dir)
        for name, argv in commands.items():
            own = dict(env)
            if name != "api":  # the API is ready when it listens
                ready = ready_dir / name.replace(" ", "-")
                ready.unlink(missing_ok=True)
                own[READY_FILE_ENV] = str(ready)
            children.append(Child(name, argv, own, tie))
            children[-1].start()
        # `dormouse simulate` reads where this instance listens and what URL it verifies.
        state_file(settings).write_text(
            json.dumps({"api": f"http://{host}:{port}", "public_url": env["PUBLIC_URL"]})
        )
        _wait_for_api(host, port, children[0])
        _wait_until_ready(children[1:])
        _banner(settings, host, port, env["PUBLIC_URL"], broker, agents)
        restartable: list[Restartable] = [*children, *([broker] if broker else [])]
        return _supervise(restartable, RestartPolicy(), signals)
    except _Stopped:  # while starting: nothing to wait for, stop what started
        _say("\ndormouse: stopping …")
        return 0
    finally:
        signals.defer()  # a second Ctrl-C must not cut the orderly stop short
        _stop(children)
        # Every child has exited: this is the file's last connection, so closing it removes
        # -wal and -shm, leaving one self-contained dormouse.db (nothing to do on PostgreSQL).
        truncate_wal(settings.effective_database_url)
        if broker is not None:
            broker.stop()
        state_file(settings).unlink(missing_ok=True)
        lock.close()


class _Stopped(BaseException):
    """A stop signal arrived while ``up`` was still starting.

    Not an error, and like KeyboardInterrupt not an ``Exception``: a migration or a wait that
    catches ``Exception`` must not swallow the request to stop."""


class _StopSignals:
    """SIGINT (Ctrl-C), SIGTERM and SIGHUP (the terminal closed) all mean: stop in order.

    While starting, a signal interrupts whatever runs (a migration, the wait for the API) by
    raising ``_Stopped``; while supervising, it only sets ``requested``, so that a restart is
    never cut between starting a child and recording it.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.requested = False
        self._raise = True
        for signum in self.SIGNALS:
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.requested = True
        if self._raise:
            self._raise = False
            raise _Stopped(signum)

    def defer(self) -> None:
        """From now on a signal only sets ``requested``.

        Still our handler, never SIG_IGN: an ignored signal stays ignored across exec in the
        children started later, and SIGTERM (their pdeathsig) must reach them.
        """
        self._raise = False


class Tie:
    """What each child inherits to stay tied to this ``up``: see ``cli.lifeline``."""

    def __init__(self, fds: tuple[int, ...], preexec_fn: Callable[[], None] | None) -> None:
        self.fds, self.preexec_fn = fds, preexec_fn


class Child:
    """One process `up` runs, restartable with the same command line."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], tie: Tie) -> None:
        self.name, self.argv, self.env, self.tie = name, argv, env, tie
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> None:
        # Own session: Ctrl-C reaches only us, and we stop the children in order.
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            start_new_session=True,
            pass_fds=self.tie.fds,
            preexec_fn=self.tie.preexec_fn,
        )
        self.started_at = time.monotonic()

    def exit_status(self) -> int | None:
        return None if self.proc is None else self.proc.poll()


def _say(text: str, err: bool = False) -> None:
    """Print, unless the terminal is gone (SIGHUP): stopping in order matters more than saying so.

    A hung-up terminal fails every write with EIO. Our output then goes to /dev/null, so
    neither a later line nor the interpreter's final flush fails the orderly stop.
    """
    try:
        click.echo(text, err=err)
    except OSError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.dup2(devnull, sys.stderr.fileno())
        os.close(devnull)


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


def _wait_until_ready(children: Sequence[Child], timeout: float = 60.0) -> None:
    """Until each worker and the beat said it is ready (or exited: the supervisor reports it),
    so that the banner comes after their start-up lines."""
    deadline = time.monotonic() + timeout
    waiting = [c for c in children if READY_FILE_ENV in c.env]
    while waiting and time.monotonic() < deadline:
        waiting = [
            c
            for c in waiting
            if c.exit_status() is None and not Path(c.env[READY_FILE_ENV]).exists()
        ]
        time.sleep(0.1)


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
        f"  chat webhook secret: {settings.chat_secret()}  (POST /webhooks/chat, Standard "
        "Webhooks)",
        "  outbound chat: "
        + (
            f"signed POST to {settings.chat_callback_url}"
            if settings.chat_callback_url
            else "the API only (no CHAT_CALLBACK_URL)"
        ),
        "  agents (service: agent; tools), `dormouse agents` lists them again:",
        *(f"    {line}" for line in agents),
        "",
        "Try it in a browser (what follows # is never sent to a server):",
        f"  http://{host}:{port}/chat#key={quote(key, safe='')}",
        "",
        f"Operator console: http://{host}:{port}/console  (an account: "
        "`.venv/bin/dormouse operators add NAME` prints its password)",
        f"API docs: http://{host}:{port}/docs",
        "",
        "or in another terminal:",
        '  .venv/bin/dormouse simulate sms --from +14155550100 "hello there"',
        '  .venv/bin/dormouse simulate sms --from +14155550100 "my name is Ada"',
        '  .venv/bin/dormouse simulate email --from ada@example.com "Where is my order?"',
        '  .venv/bin/dormouse simulate chat --user U024BE7LH "hi from chat"',
        "  .venv/bin/dormouse conversations list",
        "  .venv/bin/dormouse outbox",
        f'  curl -H "Authorization: Bearer {key}" http://{host}:{port}/v1/conversations',
        "",
        "Ctrl-C stops everything.",
        "",
    ]
    _say("\n".join(lines))


class Restartable(Protocol):
    name: str
    started_at: float

    def start(self) -> None: ...
    def exit_status(self) -> int | None: ...


def _supervise(
    processes: Sequence[Restartable], policy: RestartPolicy, signals: _StopSignals
) -> int:
    signals.defer()
    due: dict[str, float] = {}  # name -> when it restarts
    while not signals.requested:
        now = time.monotonic()
        for process in processes:
            status = process.exit_status()
            if status is None or process.name in due:
                continue
            if status == EXIT_CONFIGURATION:
                # It said which setting, in one line above: restarting meets the same one.
                _say(
                    f"dormouse: {process.name} refused its configuration (see above); "
                    "stopping everything",
                    err=True,
                )
                return status
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
                    _say(f"dormouse: {process.name} did not start: {exc}", err=True)
                else:
                    _say(f"dormouse: {process.name} restarted", err=True)
        time.sleep(0.2)
    _say("\ndormouse: stopping …")
    return 0


def _restart_delay(
    process: Restartable, status: int, now: float, policy: RestartPolicy
) -> float | None:
    """Say why it stopped; the delay before its restart, or None to give up."""
    ran = now - process.started_at
    delay = policy.record_exit(process.name, ran_for=ran, now=now)
    if delay is None:
        _say(
            f"dormouse: {process.name} {describe_exit(status)} and keeps crashing "
            f"({policy.max_fast_crashes} times within {policy.window:.0f}s, each after less "
            f"than {policy.stable_after:.0f}s); stopping everything",
            err=True,
        )
        return None
    _say(
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
