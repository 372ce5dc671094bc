"""Acme's agents: what a business puts on Dormouse without touching its source.

Run with ``DORMOUSE_AGENTS=examples.acme.agents make up`` (from the repository root). Each
agent uses the model ``ACME_MODEL`` names (any Pydantic AI model string, e.g.
``openai:gpt-4o-mini``), or the OpenAI-compatible endpoint of ``MODEL_BASE_URL``; tests give
them a scripted ``FunctionModel`` instead.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from openai import AsyncOpenAI
from pydantic_ai import Agent, RunContext
from pydantic_ai.models import Model, infer_model
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

import dormouse

SAMPLE_ORDERS = [
    ("A-1001", "shipped", "arrives Thursday"),
    ("A-1002", "processing", "leaves the warehouse tomorrow"),
    ("A-1003", "delivered", "left at the front door on Monday"),
]


def orders() -> sqlite3.Connection:
    """Acme's order table: a small SQLite file, created with sample rows on first use."""
    path = Path(os.environ.get("ACME_ORDERS_DB", "var/acme-orders.db"))
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, status TEXT, note TEXT)")
    db.executemany("INSERT OR IGNORE INTO orders VALUES (?, ?, ?)", SAMPLE_ORDERS)
    db.commit()
    return db


@dormouse.tool(timeout=5)
def lookup_order(ctx: RunContext[dormouse.TurnDeps], order_id: str) -> str:
    """Look up an Acme order by its id (like A-1001): its status and delivery note."""
    with orders() as db:
        row = db.execute(
            "SELECT status, note FROM orders WHERE id = ?", (order_id.strip().upper(),)
        ).fetchone()
    if row is None:
        return f"no order {order_id}: ask the customer to check the id"
    return f"order {order_id.upper()}: {row[0]}, {row[1]}"


def model() -> Model:
    if name := os.environ.get("ACME_MODEL"):
        return infer_model(name)
    client = AsyncOpenAI(
        base_url=os.environ.get("MODEL_BASE_URL", "http://127.0.0.1:11434/v1"),
        api_key=os.environ.get("MODEL_API_KEY") or "unused",
    )
    return OpenAIChatModel(
        os.environ.get("MODEL_NAME", "gpt-4o-mini"), provider=OpenAIProvider(openai_client=client)
    )


support = Agent(
    model(),
    deps_type=dormouse.TurnDeps,
    instructions=(
        "You are Acme's support assistant. Look orders up with lookup_order before you say "
        "anything about one. Hand the customer to a human when they ask for one."
    ),
    tools=[lookup_order],
)

sales = Agent(
    model(),
    deps_type=dormouse.TurnDeps,
    instructions=(
        "You are Acme's sales assistant. Be brief and friendly; offer this week's deal "
        "(two widgets for the price of one) when the customer shows interest."
    ),
)

agents = {"support": support, "sales": sales}
