from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.conftest import Backend
from tests.e2e.stack import Stack
from tests.fakes.twilio_api import FakeTwilio


@pytest.fixture
def make_stack(
    request: pytest.FixtureRequest,
    db: Engine,
    migrated: Backend,
    fake_twilio: FakeTwilio,
    tmp_path: Path,
) -> Iterator[Callable[..., Stack]]:
    stacks: list[Stack] = []
    request.node._stacks = stacks  # read by the report hook below

    def make(backend: Backend | None = None, **env: str) -> Stack:
        workdir = tmp_path / f"stack{len(stacks)}"
        workdir.mkdir()
        stack = Stack(backend or migrated, workdir, fake_twilio.url, **env)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for stack in getattr(item, "_stacks", []):
            report.sections.append(("dormouse process logs", stack.logs()))
