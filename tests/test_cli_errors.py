"""The CLI run where there is no Dormouse: one line saying where it looked, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_the_cli_in_a_directory_without_dormouse_names_the_data_dir(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATA_DIR", "DATABASE_URL")}
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "conversations", "list"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert f"DATA_DIR={tmp_path / 'var'}" in line and "Traceback" not in result.stderr


def test_an_api_on_a_shared_database_refuses_to_start_without_its_secrets(
    tmp_path: Path,
) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in (
            "DORMOUSE_API_KEYS",
            "EMAIL_INBOUND_SECRET",
            "CHAT_WEBHOOK_SECRET",
            "CONSOLE_SECRET",
            "DORMOUSE_AGENTS",
        )
    }
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "api", "--port", "1"],
        cwd=tmp_path,
        env={
            **env,
            "DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none",
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert (
        "set DORMOUSE_API_KEYS and EMAIL_INBOUND_SECRET and CHAT_WEBHOOK_SECRET and "
        "CONSOLE_SECRET" in result.stderr
    )


def test_a_worker_posting_chat_callbacks_on_a_shared_database_needs_the_shared_secret(
    tmp_path: Path,
) -> None:
    # Its signatures must verify with the secret the receiver shares with every API machine.
    env = {k: v for k, v in os.environ.items() if k != "CHAT_WEBHOOK_SECRET"}
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "worker"],
        cwd=tmp_path,
        env={
            **env,
            "DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none",
            "CHAT_CALLBACK_URL": "https://chat.example.com/dormouse",
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2  # a configuration error: `up` does not restart it
    assert "set CHAT_WEBHOOK_SECRET, the same on every machine" in result.stderr
