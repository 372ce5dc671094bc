"""DORMOUSE_AGENTS is checked when any process starts: one clear line, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BAD_MODULES = {
    "not_a_dict": "agents = ['support']\n",
    "not_an_agent": "agents = {'support': 42}\n",
    "not_a_name": "agents = {7: object()}\n",
    "broken": "import no_such_package_here\n",
    "no_deps_type": "from pydantic_ai import Agent\nagents = {'support': Agent('test')}\n",
}


def dormouse(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env={**os.environ, "DATA_DIR": str(tmp_path / "var"), **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def modules(tmp_path: Path) -> Path:
    for name, source in BAD_MODULES.items():
        (tmp_path / f"{name}.py").write_text(source)
    return tmp_path


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("no_such_module", "importing 'no_such_module' failed: ModuleNotFoundError"),
        ("not_a_dict:by_service", "module 'not_a_dict' has no attribute 'by_service'"),
        ("not_a_dict.py", "give the module's dotted name as Python imports it"),
        ("no_deps_type", "has deps_type=object; Dormouse gives every run dormouse.TurnDeps"),
        ("broken", "No module named 'no_such_package_here'"),
        ("not_a_dict", "not_a_dict.agents must be a dict of service name -> agent, not list"),
        ("not_an_agent:agents", "the agent for service 'support' is a int"),
        ("not_a_name", "service names must be non-empty strings, got 7"),
    ],
)
def test_a_bad_agents_module_stops_start_up_with_one_line_naming_it(
    modules: Path, spec: str, named: str
) -> None:
    result = dormouse(modules, "agents", DORMOUSE_AGENTS=spec)
    assert result.returncode != 0
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"dormouse: DORMOUSE_AGENTS={spec}: ") and named in line


def test_dormouse_agents_lists_each_service_with_its_agent_model_and_tools(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[1]
    result = dormouse(
        tmp_path,
        "agents",
        DORMOUSE_AGENTS="examples.acme.agents",
        PYTHONPATH=str(repo),
        ACME_MODEL="test",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "  default: offline; tools: end_conversation, handoff_to_human, remember" in lines
    assert (
        "  support: pydantic-ai (test:test); tools: lookup_order, end_conversation, "
        "handoff_to_human, remember"
    ) in lines
    assert any(line.startswith("  sales: pydantic-ai (test:test)") for line in lines)


@pytest.mark.parametrize("command", ["worker", "beat", "api"])
def test_every_process_checks_the_agents_before_it_starts(modules: Path, command: str) -> None:
    result = dormouse(modules, command, DORMOUSE_AGENTS="not_an_agent")
    assert result.returncode != 0
    assert result.stderr.strip() == (
        "dormouse: DORMOUSE_AGENTS=not_an_agent: the agent for service 'support' is a int, not a "
        "pydantic_ai.Agent or an object with run_turn() and summarize()"
    )
