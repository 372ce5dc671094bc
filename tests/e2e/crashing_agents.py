"""An agent whose tool has a side effect outside Dormouse, then kills its own worker before
the turn can commit (once): what a crash between a tool and the commit looks like."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from pydantic_ai import Agent, RunContext
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, UserPromptPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

import dormouse


@dormouse.tool
def charge(ctx: RunContext[dormouse.TurnDeps], cents: int) -> str:
    """Charge the customer's card."""
    ledger = Path(os.environ["CHARGE_LEDGER"])
    with ledger.open("a") as out:  # the payment provider, deduplicating on this key
        out.write(f"{ctx.deps.idempotency_key}\n")
    crashed = ledger.with_suffix(".crashed")
    if not crashed.exists():
        crashed.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return f"charged {cents} cents"


def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    if isinstance(messages[-1].parts[-1], UserPromptPart):
        return ModelResponse(parts=[ToolCallPart("charge", {"cents": 500})])
    return ModelResponse(parts=[TextPart("Done: your card was charged 5.00")])


agents = {"default": Agent(FunctionModel(script), deps_type=dormouse.TurnDeps, tools=[charge])}
