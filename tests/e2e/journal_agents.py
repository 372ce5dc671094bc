"""A billing agent on the OpenAI-compatible server at MODEL_BASE_URL: it charges a card,
sends a receipt, then answers. Each tool appends its idempotency key to a ledger file (the
payment provider and the mail server), so a test sees how often each really ran. While the
file CHARGE_HOLD names exists, charge_card waits before it charges (a worker to be killed
there has journaled the first model response and charged nothing)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from openai import AsyncOpenAI
from pydantic_ai import Agent, RunContext
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

import dormouse


def _ledger(line: str) -> None:
    with Path(os.environ["CHARGE_LEDGER"]).open("a") as out:
        out.write(f"{line}\n")


@dormouse.tool
def charge_card(ctx: RunContext[dormouse.TurnDeps], amount_cents: int) -> str:
    """Charge the customer's card."""
    hold = os.environ.get("CHARGE_HOLD")
    if hold:
        Path(f"{hold}.reached").touch()
        while Path(hold).exists():
            time.sleep(0.05)
    _ledger(f"charge {ctx.deps.idempotency_key}")
    return f"charged {amount_cents}"


@dormouse.tool
def send_receipt(ctx: RunContext[dormouse.TurnDeps], email: str) -> str:
    """Email the customer a receipt."""
    _ledger(f"receipt {ctx.deps.idempotency_key}")
    return f"receipt sent to {email}"


_client = AsyncOpenAI(base_url=os.environ["MODEL_BASE_URL"], api_key="unused", max_retries=0)
_model = OpenAIChatModel("fake-llm", provider=OpenAIProvider(openai_client=_client))
agents = {
    "default": Agent(
        _model,
        deps_type=dormouse.TurnDeps,
        instructions="You bill customers.",
        tools=[charge_card, send_receipt],
    )
}
