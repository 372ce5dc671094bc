"""Inactivity sweep at scale: N suspended conversations on PostgreSQL, D of them due.

Measures, in one run:
- closing all D due conversations with the production sweep (claim batch with SKIP LOCKED,
  conditional update, closing message into the outbox), against its floor: one bare
  ``UPDATE … WHERE status = 'suspended' AND expires_at <= now`` over the same rows;
- a sweep with nothing due, against the floor of one ``SELECT 1`` round trip.

    .venv/bin/python -m benchmarks.timeout_sweep            # 1,000,000 / 10,000
    .venv/bin/python -m benchmarks.timeout_sweep --quick    # 100,000 / 1,000
"""

from __future__ import annotations

import argparse
from datetime import timedelta

from sqlalchemy import Engine, text

from benchmarks.common import machine, median_of, scratch_postgres, timed, today, write_section
from conversations.db import transaction
from conversations.timeout_store import set_policy
from conversations.timeouts import Policy, Scope
from conversations.types import utcnow
from scheduler.timeouts import close_expired

DEFAULTS = {"": Policy(timedelta(hours=24))}
BATCH = 500


def populate(engine: Engine, total: int, due: int) -> None:
    """Bulk rows in SQL: one customer, one open conversation per service."""
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO customers (id, created_at) VALUES (gen_random_uuid(), now())")
        )
        conn.execute(
            text("""
            INSERT INTO conversations (
                id, customer_id, service, channel, address, status, claim_attempts, turn_count,
                inbound_count, last_activity_at, created_at, updated_at, expires_at,
                timeout_override_set)
            SELECT gen_random_uuid(), (SELECT id FROM customers LIMIT 1), 's' || i, 'sms',
                   '+1555' || lpad(i::text, 7, '0'), 'suspended', 0, 0, 1,
                   now() - interval '1 day', now(), now(),
                   CASE WHEN i <= :due THEN now() - interval '1 minute'
                        ELSE now() + (i % 86400) * interval '1 second' + interval '1 hour' END,
                   false
            FROM generate_series(1, :total) AS i
            """),
            {"due": due, "total": total},
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE conversations"))


def sweep_all(engine: Engine) -> int:
    closed = 0
    now = utcnow()
    while True:
        with transaction(engine) as session:
            result = close_expired(session, now=now, limit=BATCH, defaults=DEFAULTS)
        closed += len(result.closed)
        if not result.closed:
            return closed


def reopen(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM outbox"))
        conn.execute(text("DELETE FROM messages"))
        conn.execute(
            text(
                "UPDATE conversations SET status = 'suspended', finish_reason = NULL, "
                "finished_at = NULL, expires_at = now() - interval '1 minute' "
                "WHERE status = 'finished'"
            )
        )


def floor_update(engine: Engine) -> int:
    with engine.begin() as conn:
        return conn.execute(
            text(
                "UPDATE conversations SET status = 'finished', finish_reason = 'timeout', "
                "finished_at = now(), expires_at = NULL "
                "WHERE status = 'suspended' AND expires_at <= now()"
            )
        ).rowcount


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    total, due = (100_000, 1_000) if args.quick else (1_000_000, 10_000)
    command = "make bench-timeouts" + (" (quick)" if args.quick else "")

    with scratch_postgres("dormouse_bench_sweep") as engine:
        print(f"populating {total:,} suspended conversations, {due:,} due …", flush=True)
        populate_s = timed(lambda: populate(engine, total, due))
        with transaction(engine) as session:
            set_policy(
                session,
                Scope(),
                Policy(timedelta(hours=24), closing_message="Closing."),
                actor="bench",
                now=utcnow(),
            )

        floor_close = timed(lambda: floor_update(engine))
        reopen(engine)
        closed = 0

        def run() -> None:
            nonlocal closed
            closed = sweep_all(engine)

        sweep_close = timed(run)
        assert closed == due, (closed, due)

        empty_sweep = median_of(lambda: sweep_all(engine), 20)

        def select_one() -> None:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        floor_empty = median_of(select_one, 20)
        facts = machine(engine)

    rows = [
        (
            "close all due (sweep, with closing messages)",
            f"{sweep_close:.2f} s",
            f"{sweep_close / floor_close:.1f} x bare UPDATE",
        ),
        ("close all due (floor: one bare UPDATE)", f"{floor_close:.2f} s", "1.0 x"),
        (
            "sweep with nothing due (median of 20)",
            f"{empty_sweep * 1000:.2f} ms",
            f"{empty_sweep / floor_empty:.1f} x SELECT 1",
        ),
        ("floor: SELECT 1 round trip (median of 20)", f"{floor_empty * 1000:.2f} ms", "1.0 x"),
    ]
    table = "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    body = f"""## Inactivity sweep ({total:,} suspended conversations, {due:,} due, PostgreSQL)

Measured {today()} on {facts}. Command: `{command}`. Populating took {populate_s:.0f} s.

| what | time | ratio |
|---|---|---|
{table}

Goal: {due:,} closed in under 10 s; an empty sweep in milliseconds whatever the number of
suspended conversations. The sweep reads the `(status, expires_at)` index range only
(`tests/test_timeout_sweep.py` asserts the plan), claims {BATCH} rows at a time with
`FOR UPDATE SKIP LOCKED`, closes them with a conditional update and writes each closing
message to the outbox in the same transaction; the floor does only the status update.
"""
    print(body)
    if not args.quick:  # quick runs are smoke checks; the README keeps the full figures
        write_section("timeout-sweep", body)


if __name__ == "__main__":
    main()
