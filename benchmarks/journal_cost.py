"""What the step journal costs: one step's write, and its share of a turn's CPU.

1. Per step, on PostgreSQL and SQLite: ``FencedJournal.append`` (the fence and the insert, one
   transaction) of a model response with a tool call and of a tool result, as a turn writes
   them; wall and CPU, p50 and p95.
2. Per turn: a Pydantic AI agent with two tools (five journaled steps) against a local
   OpenAI-compatible server in another process (its CPU is not ours), run in-process by
   ``run_turn`` on PostgreSQL: this process's CPU per turn and the journal writes' share.

    .venv/bin/python -m benchmarks.journal_cost            # 1,000 appends, 200 turns
    .venv/bin/python -m benchmarks.journal_cost --quick    # 300 appends, 60 turns
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from openai import AsyncOpenAI
from pydantic_ai import Agent, RunContext
from pydantic_ai.messages import ModelRequest, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider
from pydantic_ai.usage import RequestUsage
from sqlalchemy import Engine

import dormouse
from agent.catalog import AgentCatalog
from agent.journal import _dump
from agent.journal_store import FencedJournal, RecordedStep
from benchmarks.common import CountingWaker, machine, scratch_postgres, today, write_section
from benchmarks.platform import percentile
from conversations.db import make_engine, transaction
from conversations.migrate import migrate
from conversations.settings import Settings
from conversations.types import utcnow
from tests.factories import ingest_sms
from workers import turn_store
from workers.turn import run_turn

DATABASE = "dormouse_bench_journal"
ANSWER = "Your order A-1001 left our warehouse on Monday and should arrive by Thursday. " * 4


def steps() -> Iterator[RecordedStep]:
    """A model step (text and a tool call) then a tool result, alternately, as a turn writes."""
    model = ModelResponse(
        parts=[
            TextPart(ANSWER[:300]),
            ToolCallPart("lookup_order", {"order_id": "A-1001"}, tool_call_id="call_1"),
        ],
        usage=RequestUsage(input_tokens=900, output_tokens=60),
        model_name="fake-llm",
    )
    tool = ModelRequest(parts=[ToolReturnPart("lookup_order", ANSWER[:200], tool_call_id="call_1")])
    step = 0
    while True:
        yield RecordedStep(step, 0, "model", "fake-llm", "0" * 64, _dump([model]), None, 900, 60)
        record = {"name": "lookup_order", "arguments": {"order_id": "A-1001"}, "result": "…"}
        yield RecordedStep(step, 1, "tool", "lookup_order", "1" * 64, _dump([tool]), record)
        step += 1


def append_cost(engine: Engine, count: int) -> dict[str, float]:
    """p50/p95 wall and CPU (ms) of one journal write, under a held lease."""
    cid = ingest_sms(engine, "where is my order?", f"+1415555{uuid.uuid4().int % 10_000:04d}")
    token = uuid.uuid4()
    with transaction(engine) as session:
        turn_store.claim(
            session, cid.conversation_id, token=token, now=utcnow(), lease_seconds=3600
        )
    journal = FencedJournal(engine, cid.conversation_id, 1, token)
    walls: list[float] = []
    cpus: list[float] = []
    for _, step in zip(range(count + 20), steps(), strict=False):
        wall, cpu = time.perf_counter(), time.thread_time()
        journal.append(step)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.thread_time() - cpu)
    walls, cpus = walls[20:], cpus[20:]  # the pool and the statement cache warm up first
    return {
        "wall_p50": percentile(walls, 50) * 1000,
        "wall_p95": percentile(walls, 95) * 1000,
        "cpu_p50": percentile(cpus, 50) * 1000,
        "cpu_p95": percentile(cpus, 95) * 1000,
    }


@contextmanager
def model_server() -> Iterator[str]:
    """The tests' fake model in a process of its own, planning two tool calls a turn."""
    code = (
        "import sys, time\n"
        "from tests.fakes.model_api import FakeModel\n"
        "fake = FakeModel(tool_plan=[('charge_card', {'amount_cents': 500}),"
        " ('send_receipt', {'email': 'ann@example.com'})]).start()\n"
        "print(fake.url, flush=True)\n"
        "sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.kill()
        proc.wait()


def billing_agent(url: str) -> Agent[Any, str]:
    @dormouse.tool
    def charge_card(ctx: RunContext[dormouse.TurnDeps], amount_cents: int) -> str:
        """Charge the customer's card."""
        return f"charged {amount_cents}"

    @dormouse.tool
    def send_receipt(ctx: RunContext[dormouse.TurnDeps], email: str) -> str:
        """Email the customer a receipt."""
        return f"receipt sent to {email}"

    client = AsyncOpenAI(base_url=url, api_key="unused", max_retries=0)
    model = OpenAIChatModel("fake-llm", provider=OpenAIProvider(openai_client=client))
    return Agent(model, deps_type=dormouse.TurnDeps, tools=[charge_card, send_receipt])


class JournalClock:
    """CPU spent inside journal writes, whichever thread made them."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.writes = 0
        self._lock = threading.Lock()
        self._append = FencedJournal.append

    def __enter__(self) -> JournalClock:
        clock, append = self, self._append

        def timed(journal: FencedJournal, step: RecordedStep, now: Any = None) -> None:
            started = time.thread_time()
            try:
                append(journal, step, now)
            finally:
                with clock._lock:
                    clock.seconds += time.thread_time() - started
                    clock.writes += 1

        FencedJournal.append = timed  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        FencedJournal.append = self._append  # type: ignore[method-assign]


def turn_share(engine: Engine, settings: Settings, turns: int) -> dict[str, float]:
    with model_server() as url:
        catalog = AgentCatalog({"default": billing_agent(url)})
        waker = CountingWaker()

        def one(n: int) -> None:
            cid = ingest_sms(engine, "please charge my card", f"+1415556{n:04d}").conversation_id
            assert run_turn(cid, engine=engine, agents=catalog, settings=settings, waker=waker)

        for n in range(5):  # imports, pools, the agent loop
            one(9_000 + n)
        with JournalClock() as journal:
            started = time.process_time()
            for n in range(turns):
                one(n)
            cpu = time.process_time() - started
    return {
        "turn_cpu": cpu / turns * 1000,
        "journal_cpu": journal.seconds / turns * 1000,
        "steps": journal.writes / turns,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    appends, turns = (300, 60) if args.quick else (1_000, 200)
    with scratch_postgres(DATABASE) as pg, tempfile.TemporaryDirectory() as tmp:
        sqlite_url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        migrate(Settings(data_dir=Path(tmp), database_url=sqlite_url))
        sqlite = make_engine(sqlite_url)
        per_step = {"PostgreSQL": append_cost(pg, appends), "SQLite": append_cost(sqlite, appends)}
        sqlite.dispose()
        settings = Settings(
            data_dir=Path(tmp),
            database_url=pg.url.render_as_string(hide_password=False),
            lease_seconds=int(timedelta(minutes=5).total_seconds()),
            turn_time_limit=120,
            limit_turns_per_conversation="off",
            limit_turns="off",
        )
        share = turn_share(pg, settings, turns)
        facts = machine(pg)
    rows = "\n".join(
        f"| {name} | {c['wall_p50']:.2f} ms | {c['wall_p95']:.2f} ms | {c['cpu_p50']:.2f} ms "
        f"| {c['cpu_p95']:.2f} ms |"
        for name, c in per_step.items()
    )
    body = (
        f"## Step journal ({today()}, {facts})\n\n"
        f"`python -m benchmarks.journal_cost{' --quick' if args.quick else ''}`: {appends:,} "
        "writes per backend (a model step with a tool call, then a tool result), each the "
        "fence and the insert in one transaction.\n\n"
        "| backend | write p50 | write p95 | CPU p50 | CPU p95 |\n|---|---|---|---|---|\n"
        f"{rows}\n\n"
        f"A turn of a Pydantic AI agent with two tools ({share['steps']:.0f} journaled steps), "
        f"in-process on PostgreSQL, {turns} turns, the model server in another process: "
        f"**{share['turn_cpu']:.1f} ms** of Dormouse CPU per turn, of which the journal's "
        f"writes **{share['journal_cpu']:.1f} ms "
        f"({share['journal_cpu'] / share['turn_cpu']:.0%})**, "
        f"{share['journal_cpu'] / share['steps']:.2f} ms per step.\n"
    )
    print(body)
    write_section("journal-cost", body)


if __name__ == "__main__":
    main()
