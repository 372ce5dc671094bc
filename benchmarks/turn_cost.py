"""What one turn costs as a customer's history grows, and against LangGraph's checkpointer.

One turn = ingest one inbound message + claim, rehydrate (conversation window + memory),
offline agent, commit (reply + outbox row + release). The broker is left out (a recording
waker) so the figure is the database work a turn does.

    .venv/bin/python -m benchmarks.turn_cost            # 10 / 1,000 / 10,000 messages; 1,000 turns
    .venv/bin/python -m benchmarks.turn_cost --quick

LangGraph's part needs the optional group: pip install -e '.[bench]'.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, insert, text, update

from agent.catalog import AgentCatalog
from benchmarks.common import (
    POSTGRES_URL,
    CountingWaker,
    machine,
    scratch_postgres,
    today,
    write_section,
)
from conversations.db import make_engine, transaction
from conversations.ingest import ingest
from conversations.migrate import migrate
from conversations.models import Conversation, MemoryEntry, Message
from conversations.settings import Settings
from conversations.types import utcnow
from tests.factories import sms
from workers.turn import run_turn

SETTINGS = Settings(history_window=20)
DEFAULTS = SETTINGS.default_policies()
TEXT = "Hi, I ordered a blue jacket last week and it has not arrived yet, can you check?"


WARM_UP = 5


def one_turn(engine: Engine, sender: str, n: int, waker: CountingWaker) -> float:
    start = time.perf_counter()
    with transaction(engine) as session:
        result = ingest(
            session,
            sms(f"{TEXT} ({n})", sender=sender),
            service="bench",
            now=utcnow(),
            defaults=DEFAULTS,
            help_text=SETTINGS.help_text,
        )
    committed = run_turn(
        result.conversation_id, engine=engine, agents=AgentCatalog(), settings=SETTINGS, waker=waker
    )
    assert committed == 1
    return time.perf_counter() - start


def seed_history(engine: Engine, sender: str, messages: int) -> None:
    """A customer with ``messages`` messages in their open conversation, and memory."""
    with transaction(engine) as session:
        result = ingest(
            session,
            sms("first", sender=sender),
            service="bench",
            now=utcnow(),
            defaults=DEFAULTS,
            help_text=SETTINGS.help_text,
        )
        cid = result.conversation_id
        session.execute(
            update(Message).where(Message.conversation_id == cid).values(inbound_state="done")
        )
        customer = session.get_one(Conversation, cid).customer_id
    now = utcnow()
    rows = [
        {
            "conversation_id": cid,
            "direction": "inbound" if i % 2 == 0 else "outbound",
            "role": "customer" if i % 2 == 0 else "agent",
            "channel": "sms",
            "address": sender,
            "body": TEXT,
            "media": [],
            "meta": {},
            "inbound_state": "done" if i % 2 == 0 else None,
            "created_at": now - timedelta(seconds=messages - i),
        }
        for i in range(messages - 1)
    ]
    for start in range(0, len(rows), 5000):
        with transaction(engine) as session:
            session.execute(insert(Message), rows[start : start + 5000])
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        # What autovacuum does after a bulk load: plans from real statistics, not an empty table.
        conn.execute(text("ANALYZE"))
    with transaction(engine) as session:
        session.execute(
            insert(MemoryEntry),
            [
                {"customer_id": customer, "kind": "summary", "text": TEXT, "created_at": now}
                for _ in range(max(1, messages // 20))
            ],
        )


def per_turn(engine: Engine, history: int, turns: int) -> float:
    sender = f"+1555{history:07d}"
    seed_history(engine, sender, history)
    waker = CountingWaker()
    # Warm caches and statements: psycopg prepares a statement on its fifth execution.
    for n in range(-WARM_UP, 0):
        one_turn(engine, sender, n, waker)
    return statistics.median(one_turn(engine, sender, i, waker) for i in range(turns))


def storage_per_message(engine: Engine) -> tuple[float, float]:
    with engine.connect() as conn:
        size = conn.execute(text("SELECT pg_total_relation_size('messages')")).scalar_one()
        count, avg_text = conn.execute(
            text("SELECT count(*), avg(octet_length(body)) FROM messages")
        ).one()
    return size / count, float(avg_text)


def langgraph_turns(database: str, turns: int) -> float | None:
    try:
        from langgraph.checkpoint.postgres import PostgresSaver
        from langgraph.graph import END, START, MessagesState, StateGraph
    except ImportError:
        return None
    uri = f"postgresql://{POSTGRES_URL.split('://', 1)[1].rsplit('/', 1)[0]}/{database}"
    with PostgresSaver.from_conn_string(uri) as saver:
        saver.setup()
        graph = StateGraph(MessagesState)
        graph.add_node("reply", lambda state: {"messages": [("assistant", "Thanks, noted.")]})
        graph.add_edge(START, "reply")
        graph.add_edge("reply", END)
        app = graph.compile(checkpointer=saver)
        config = {"configurable": {"thread_id": "bench"}}
        start = time.perf_counter()
        for i in range(turns):
            app.invoke({"messages": [("user", f"{TEXT} ({i})")]}, config)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    histories = (10, 100, 1_000) if args.quick else (10, 1_000, 10_000)
    samples = 10 if args.quick else 100
    long_run = 100 if args.quick else 1_000

    results: dict[str, dict[int, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        migrate(Settings(data_dir=Path(tmp), database_url=url))
        engine = make_engine(url)
        results["SQLite"] = {h: per_turn(engine, h, samples) for h in histories}
        engine.dispose()

    with scratch_postgres("dormouse_bench_turns") as engine:
        results["PostgreSQL"] = {h: per_turn(engine, h, samples) for h in histories}
        per_message, avg_text = storage_per_message(engine)
        waker = CountingWaker()
        sender = "+15550000001"
        start = time.perf_counter()
        for i in range(long_run):
            one_turn(engine, sender, i, waker)
        ours = time.perf_counter() - start
        facts = machine(engine)
    with scratch_postgres("dormouse_bench_langgraph") as _:
        theirs = langgraph_turns("dormouse_bench_langgraph", long_run)

    lines = []
    for backend, by_history in results.items():
        base = by_history[histories[0]]
        for h, cost in by_history.items():
            lines.append(f"| {backend} | {h:,} | {cost * 1000:.2f} ms | {cost / base:.2f} x |")
    versus = (
        f"| LangGraph PostgresSaver, same {long_run:,} turns | {theirs:.2f} s | "
        f"{theirs / ours:.1f} x Dormouse |"
        if theirs
        else "| LangGraph | not installed (`pip install -e '.[bench]'`) | |"
    )
    body = f"""## Per-turn cost as history grows ({"quick" if args.quick else "full"})

Measured {today()} on {facts}. Command: `make bench-turns`.
One turn = ingest an inbound message + claim, rehydrate, offline agent, commit; median of
{samples} turns after {WARM_UP} warm-up turns, broker excluded. History = messages already
in the customer's open conversation (plus a summary per 20 of them in memory).

| backend | history (messages) | per turn | vs 10 messages |
|---|---|---|---|
{chr(10).join(lines)}

Goal: flat, at most 1.2 x from 10 to {histories[-1]:,} messages: a turn reads a bounded
window through indexes.

| {long_run:,} turns on one conversation, PostgreSQL | total | ratio |
|---|---|---|
| Dormouse (ingest + turn + commit) | {ours:.2f} s | 1.0 x |
{versus}

A LangGraph graph with a messages state and one node appending a fixed reply, on its
PostgreSQL checkpointer: each step loads and writes the thread's state, which grows with
every turn. Goal: Dormouse at least 30 x cheaper at {long_run:,} turns.

Storage: {per_message:.0f} bytes per message row with its indexes, for {avg_text:.0f} bytes
of text ({per_message / avg_text:.1f} x; goal 2 x). The fixed part is the row header,
ids, timestamps, state columns and four index entries, about the same for any text length.
"""
    print(body)
    if not args.quick:
        write_section("turn-cost", body)


if __name__ == "__main__":
    main()
