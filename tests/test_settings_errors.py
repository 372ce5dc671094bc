"""A mistyped setting is one line naming the variable as typed, its value and what it
accepts; exit 2, and `dormouse up` neither starts nor restarts anything over it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cli.restarts import RestartPolicy
from cli.supervisor import Child, Tie, _StopSignals, _supervise
from conversations.settings_errors import EXIT_CONFIGURATION

ROOT = Path(__file__).resolve().parents[1]


def dormouse(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BROKER_URL")}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env={**clean, "DATA_DIR": str(tmp_path / "var"), "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"TIMEOUT_SMS": "24hrs"}, "TIMEOUT_SMS='24hrs': '24hrs' is not a duration"),
        ({"Port": "81O1"}, "Port='81O1': accepts a whole number"),
        ({"MAX_TURN_ATTEMPTS": "five"}, "MAX_TURN_ATTEMPTS='five': accepts a whole number"),
        ({"LOG_LEVEL": "verbose"}, "LOG_LEVEL='verbose': accepts DEBUG, INFO, WARNING"),
        ({"DEFAULT_REGION": "UK"}, "DEFAULT_REGION='UK': accepts a two-letter ISO 3166"),
        ({"PUBLIC_URL": "127.0.0.1:8101"}, "PUBLIC_URL='127.0.0.1:8101': accepts an absolute"),
        ({"PUBLIC_URL": "https://d.example.com/sms"}, "no path, query or fragment"),
        ({"DORMOUSE_API_KEYS": "s3cr3t-key"}, "DORMOUSE_API_KEYS (value not shown)"),
    ],
)
def test_a_bad_setting_is_one_line_and_exit_2(
    tmp_path: Path, env: dict[str, str], line: str
) -> None:
    result = dormouse(tmp_path, "agents", **env)
    assert result.returncode == EXIT_CONFIGURATION
    [said] = result.stderr.splitlines()
    assert said.startswith("dormouse: ") and line in said
    assert "s3cr3t" not in said


def test_each_bad_setting_gets_its_line(tmp_path: Path) -> None:
    result = dormouse(tmp_path, "agents", PORT="x", TIMEOUT_CHAT="soon", DEFAULT_REGION="ZZ")
    assert result.returncode == EXIT_CONFIGURATION
    said = result.stderr.splitlines()
    assert len(said) == 3 and {s.split("=")[0] for s in said} == {
        "dormouse: PORT",
        "dormouse: TIMEOUT_CHAT",
        "dormouse: DEFAULT_REGION",
    }


def test_up_checks_shared_secrets_before_it_starts_anything(tmp_path: Path) -> None:
    result = dormouse(tmp_path, "up", DATABASE_URL="postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert result.returncode == EXIT_CONFIGURATION
    assert "DORMOUSE_API_KEYS" in result.stderr and "CONSOLE_SECRET" in result.stderr
    assert "migrating" not in result.stdout + result.stderr
    assert not (tmp_path / "var").exists() or not any((tmp_path / "var").iterdir())


def test_a_child_refused_its_configuration_is_not_restarted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [sys.executable, "-m", "cli.main", "agents"]
    env = {**os.environ, "DATA_DIR": str(tmp_path), "PYTHONPATH": str(ROOT), "PORT": "x"}
    child = Child("api", argv, env, Tie(fds=(), preexec_fn=None))
    saved = {s: signal.getsignal(s) for s in _StopSignals.SIGNALS}
    try:
        child.start()
        status = _supervise([child], RestartPolicy(), _StopSignals())
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
    assert status == EXIT_CONFIGURATION
    err = capsys.readouterr().err
    assert "api refused its configuration" in err and "restart" not in err
