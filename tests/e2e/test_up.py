"""`dormouse up` as a newcomer runs it: children that die are restarted, Ctrl-C stops all,
and so does closing the terminal; no process of the stack outlives it unnoticed."""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import subprocess
import sys
import termios
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.e2e.stack import free_port, wait_until

pytestmark = pytest.mark.e2e


class Up:
    """`dormouse up` in its own DATA_DIR (SQLite + embedded broker), its output collected."""

    def __init__(self, data_dir: Path, *, terminal: bool = False) -> None:
        self.data_dir = data_dir
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "MODEL_"))},
            "DATA_DIR": str(data_dir),
            "REDRIVE_INTERVAL": "1",
        }
        for name in ("DATABASE_URL", "BROKER_URL", "PUBLIC_URL", "SMTP_URL"):
            self.env.pop(name, None)
        self.port = free_port()
        self.output: list[str] = []
        argv = [sys.executable, "-m", "cli.main", "up", "--port", str(self.port)]
        self._hangup = threading.Event()
        if terminal:
            # In a terminal of its own, as in a newcomer's: closing it (the master side) makes
            # the kernel hang the terminal up, sending SIGHUP to `up`, its controlling process.
            master, tty = os.openpty()
            self.proc = subprocess.Popen(
                argv,
                env=self.env,
                stdin=tty,
                stdout=tty,
                stderr=tty,
                start_new_session=True,
                preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
            )
            os.close(tty)
            self._reader = threading.Thread(target=self._read_terminal, args=(master,))
        else:
            self.proc = subprocess.Popen(
                argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            self._reader = threading.Thread(target=self._read)
        self._reader.daemon = True
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line.rstrip("\n"))

    def _read_terminal(self, master: int) -> None:
        pending = b""
        try:
            while not self._hangup.is_set():
                if select.select([master], [], [], 0.1)[0]:
                    chunk = os.read(master, 65536)
                    if not chunk:
                        break
                    *lines, pending = (pending + chunk).split(b"\n")
                    self.output.extend(line.decode(errors="replace").rstrip("\r") for line in lines)
        except OSError:  # EIO: every process closed the terminal
            pass
        finally:
            # Only the last close hangs the terminal up: this thread owns the master, so a read
            # blocked in it cannot hold it open.
            os.close(master)

    def close_terminal(self) -> None:
        self._hangup.set()
        self._reader.join(timeout=5)

    def wait_until_all_ready(self) -> None:
        """Up, and both workers ready: their pool processes are forked by then."""
        wait_until(lambda: self.said("Dormouse is up"), 60, "`dormouse up` to say it is up")
        wait_until(
            lambda: all(
                any(worker in line and "ready." in line for line in self.output)
                for worker in ("turns@", "deliveries@")
            ),
            60,
            "both workers to be ready",
        )

    def stack(self) -> list[psutil.Process]:
        """Every process `up` started, pool processes of the workers included."""
        return psutil.Process(self.proc.pid).children(recursive=True)

    def lock_is_free(self) -> bool:
        """Whether no process holds DATA_DIR/up.lock: every child inherits it."""
        with (self.data_dir / "up.lock").open("a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

    def said(self, text: str) -> bool:
        return any(text in line for line in self.output)

    def child(self, word: str) -> psutil.Process:
        for child in psutil.Process(self.proc.pid).children():
            if word in " ".join(child.cmdline()):
                return child
        raise AssertionError(f"no child of `dormouse up` runs {word!r}")

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "cli.main", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def replied(self, text: str) -> bool:
        return text in self.cli("outbox", "--limit", "50")


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    running = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                running.append(process)
        except psutil.NoSuchProcess:
            pass
    return running


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    running = Up(tmp_path / "var")
    yield running
    stop(running)


def stop(running: Up) -> None:
    stack = running.stack() if running.proc.poll() is None else []
    if running.proc.poll() is None:
        running.proc.send_signal(signal.SIGINT)
        try:
            running.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            running.proc.kill()
    for process in alive(stack):  # a failed test must not leave a stack running
        process.kill()
    print("\n".join(running.output))


def test_a_killed_worker_and_a_killed_broker_come_back_and_ctrl_c_stops_everything(
    up: Up,
) -> None:
    wait_until(lambda: up.said("Dormouse is up"), 60, "`dormouse up` to say it is up")
    [page] = [line.strip() for line in up.output if "/chat#key=" in line]
    assert page.startswith(f"http://127.0.0.1:{up.port}/chat#key=")
    assert httpx.get(page.partition("#")[0]).status_code == 200  # the fragment stays home
    said = up.cli("simulate", "sms", "--wait", "25", "--from", "+14155550100", "first")
    assert 'reply: Hi! You\'re talking to the default assistant. You said "first".' in said
    wait_until(lambda: up.replied('"first"'), 30, "the first reply")
    # The banner (key, links) is the last thing `up` printed: every worker and the beat said
    # they were ready before it, and Celery's own banners are not printed at all.
    lines = list(up.output)
    end = max(i for i, line in enumerate(lines) if "Ctrl-C stops everything" in line)
    assert not [line for line in lines[end:] if " ready." in line or "is starting" in line]
    assert not [line for line in lines if "[queues]" in line or "-------------- " in line]
    assert re.search(r"^conversation [0-9a-f-]{36}$", said, re.M)
    stopped = up.cli("simulate", "sms", "--from", "+14155550100", "STOP")
    assert "no reply is coming" in stopped and "no reply within" not in stopped  # no wait
    up.cli("simulate", "sms", "--from", "+14155550100", "START")

    worker = up.child(" worker")
    os.killpg(worker.pid, signal.SIGKILL)  # the worker and its pool children
    wait_until(lambda: up.said("worker was killed by SIGKILL"), 10, "the supervisor to say so")
    wait_until(lambda: up.said("worker restarted"), 10, "the worker to be restarted")
    up.cli("simulate", "sms", "--from", "+14155550100", "second")
    wait_until(lambda: up.replied('"second"'), 60, "a reply from the restarted worker")

    broker = up.child("valkey")
    broker.kill()
    wait_until(lambda: up.said("broker was killed by SIGKILL"), 10, "the supervisor to say so")
    wait_until(lambda: up.said("broker restarted"), 10, "the broker to be restarted")
    up.cli("simulate", "sms", "--from", "+14155550100", "third")
    wait_until(lambda: up.replied('"third"'), 60, "a reply after the broker came back")
    assert up.proc.poll() is None
    assert not up.said("stopping everything")

    children = psutil.Process(up.proc.pid).children()
    up.proc.send_signal(signal.SIGINT)
    assert up.proc.wait(timeout=30) == 0
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.parametrize("how", ["terminal closed", "kill -HUP"])
def test_sighup_stops_everything_in_order(tmp_path: Path, how: str) -> None:
    up = Up(tmp_path / "var", terminal=how == "terminal closed")
    try:
        up.wait_until_all_ready()
        stack = up.stack()
        assert len(stack) >= 5  # broker, API, two workers (and their pools), beat
        if how == "terminal closed":
            up.close_terminal()
        else:
            up.proc.send_signal(signal.SIGHUP)
        assert up.proc.wait(timeout=40) == 0
        assert not alive(stack)  # `up` waited for them: none is left to stop later
        assert up.lock_is_free()
        if how == "kill -HUP":
            assert up.said("dormouse: stopping")
    finally:
        stop(up)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_children_die_with_a_sigkilled_supervisor(up: Up) -> None:
    up.wait_until_all_ready()
    stack = up.stack()
    # Celery's prefork pool: grandchildren, which must follow their worker out.
    assert [p for p in stack if p.ppid() != up.proc.pid]
    up.proc.kill()
    up.proc.wait()
    wait_until(lambda: not alive(stack), 40, "every process of the stack to exit")
    assert up.lock_is_free()


def test_a_stack_left_running_keeps_the_next_up_out_and_is_named(up: Up) -> None:
    up.wait_until_all_ready()
    stack = up.stack()
    # Stopped processes cannot act on the SIGTERM a dead parent sends (held pending): a stack
    # left running after its supervisor died, as off Linux or with a child that hangs.
    for process in stack:
        process.suspend()
    try:
        up.proc.kill()
        up.proc.wait()
        second = subprocess.run(
            [sys.executable, "-m", "cli.main", "up", "--port", str(free_port())],
            env=up.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert second.returncode == 1, second.stdout + second.stderr
        said = second.stderr.strip()
        assert "\n" not in said, said
        assert "still held by processes an earlier `dormouse up` left running" in said, said
        for process in stack:
            assert str(process.pid) in said, said
        assert "valkey-server" in said and "dormouse worker" in said, said
        assert "Dormouse is up" not in second.stdout
    finally:
        for process in alive(stack):
            process.resume()
    # Resumed, they act on the pending SIGTERM at last, and DATA_DIR is free again.
    wait_until(lambda: not alive(stack), 40, "the resumed processes to exit")
    assert up.lock_is_free()
