"""`.env.example`, the compose stack's settings, lists every setting Dormouse reads."""

from __future__ import annotations

import re
from pathlib import Path

from conversations.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_env_example_lists_every_setting() -> None:
    text = (ROOT / ".env.example").read_text()
    listed = set(re.findall(r"^(?:# )?([A-Z][A-Z0-9_]*)=", text, re.MULTILINE))
    # LOG_LEVEL and LOG_FORMAT are read by the command line (click), not by Settings.
    assert listed == {name.upper() for name in Settings.model_fields} | {
        "LOG_LEVEL",
        "LOG_FORMAT",
    }


def test_compose_services_take_their_settings_from_env_file() -> None:
    compose = (ROOT / "compose.yaml").read_text()
    assert "env_file: .env" in compose
    assert "${" not in compose  # one place for settings: .env, not interpolation here too
