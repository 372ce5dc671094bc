"""`dormouse up` as a newcomer runs it: children that die are restarted, Ctrl-C stops all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.e2e.stack import free_port, wait_until

pytestmark = pytest.mark.e2e


class Up:
    """`dormouse up` in its own DATA_DIR (SQLite + embedded broker), its output collected."""

    def __init__(self, data_dir: Path) -> None:
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "MODEL_"))},
            "DATA_DIR": str(data_dir),
            "REDRIVE_INTERVAL": "1",
        }
        for name in ("DATABASE_URL", "BROKER_URL", "PUBLIC_URL", "SMTP_URL"):
            self.env.pop(name, None)
        self.port = free_port()
        self.output: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "up", "--port", str(self.port)],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line.rstrip("\n"))

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


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    running = Up(tmp_path / "var")
    yield running
    if running.proc.poll() is None:
        running.proc.send_signal(signal.SIGINT)
        try:
            running.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            running.proc.kill()
    print("\n".join(running.output))


def test_a_killed_worker_and_a_killed_broker_come_back_and_ctrl_c_stops_everything(
    up: Up,
) -> None:
    wait_until(lambda: up.said("Dormouse is up"), 60, "`dormouse up` to say it is up")
    said = up.cli("simulate", "sms", "--wait", "25", "--from", "+15555550100", "first")
    assert 'reply: Hi! You\'re talking to the default assistant. You said "first".' in said
    wait_until(lambda: up.replied('"first"'), 30, "the first reply")

    worker = up.child(" worker")
    os.killpg(worker.pid, signal.SIGKILL)  # the worker and its pool children
    wait_until(lambda: up.said("worker was killed by SIGKILL"), 10, "the supervisor to say so")
    wait_until(lambda: up.said("worker restarted"), 10, "the worker to be restarted")
    up.cli("simulate", "sms", "--from", "+15555550100", "second")
    wait_until(lambda: up.replied('"second"'), 60, "a reply from the restarted worker")

    broker = up.child("valkey")
    broker.kill()
    wait_until(lambda: up.said("broker was killed by SIGKILL"), 10, "the supervisor to say so")
    wait_until(lambda: up.said("broker restarted"), 10, "the broker to be restarted")
    up.cli("simulate", "sms", "--from", "+15555550100", "third")
    wait_until(lambda: up.replied('"third"'), 60, "a reply after the broker came back")
    assert up.proc.poll() is None
    assert not up.said("stopping everything")

    children = psutil.Process(up.proc.pid).children()
    up.proc.send_signal(signal.SIGINT)
    assert up.proc.wait(timeout=30) == 0
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
