from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from cli.embedded import EmbeddedBroker
from tests.conftest import Backend
from tests.e2e.stack import Stack, free_port
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


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker of the test's own, on a TCP port so a restart keeps its address: one it may
    stop or kill. Request it before ``make_stack``, so it stops after the stack does."""
    broker = EmbeddedBroker(tmp_path / "own-broker.sock", port=free_port())
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def on_own_broker(own_broker: EmbeddedBroker, migrated: Backend) -> Backend:
    return Backend(migrated.name, migrated.database_url, own_broker.url, migrated.data_dir)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for stack in getattr(item, "_stacks", []):
            report.sections.append(("dormouse process logs", stack.logs()))
