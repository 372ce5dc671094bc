"""DATA_DIR and its files are readable by their owner only, whatever the caller's umask."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conversations.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The usual login umask: files 0644 and directories 0755 unless the code says otherwise."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def dormouse(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``dormouse ARGS`` in a process of its own, started with umask 022, on SQLite."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "BROKER_URL", "DORMOUSE_AGENTS", "MODEL", "MODEL_BASE_URL")
    }
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env={**env, "DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)},
        preexec_fn=lambda: os.umask(0o022),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def test_a_new_data_dir_and_its_database_are_owner_only(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    dormouse(data_dir, "migrate")

    assert mode(data_dir) == 0o700
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    assert data_dir / "dormouse.db" in files
    assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}


def test_a_data_dir_left_open_is_tightened_at_start_and_says_so(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    (data_dir / "api-key").write_text("an-old-key\n")
    (data_dir / "api-key").chmod(0o644)
    (data_dir / "metrics").mkdir()
    (data_dir / "metrics").chmod(0o755)

    result = dormouse(data_dir, "migrate")

    assert mode(data_dir) == 0o700
    assert mode(data_dir / "metrics") == 0o700
    assert mode(data_dir / "api-key") == 0o600
    assert (data_dir / "api-key").read_text() == "an-old-key\n"  # tightened, not replaced
    said = [line for line in result.stderr.splitlines() if "readable by others" in line]
    assert len(said) == 1 and str(data_dir) in said[0]
    # Nothing left to say the next time.
    assert "readable by others" not in dormouse(data_dir, "migrate").stderr


@pytest.mark.usefixtures("loose_umask")
def test_generated_secrets_are_created_owner_only_under_a_loose_umask(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    settings = Settings(data_dir=data_dir)

    secrets = [settings.email_secret(), settings.chat_secret(), settings.console_key()]
    secrets.append(next(iter(settings.api_keys())))
    secrets.append(settings.webhook_auth_token())

    assert mode(data_dir) == 0o700
    written = sorted(data_dir.iterdir())
    assert [p.name for p in written] == [
        "api-key",
        "chat-webhook-secret",
        "console-secret",
        "email-inbound-secret",
        "twilio-dev-auth-token",
    ]  # and no temporary file left beside them
    assert {p.name: mode(p) for p in written} == {p.name: 0o600 for p in written}
    assert sorted(p.read_text().strip() for p in written) == sorted(secrets)
