"""Tools: plain functions under ``@tool``, with validated arguments and a time limit.

A crashed turn is retried, so a tool may run twice for one turn: ``ToolContext`` carries an
idempotency key stable across those retries, for tools with side effects outside Dormouse.
Effects on the conversation itself are recorded on ``TurnEffects`` and applied by the turn's
commit, under its lease, so a turn that loses its lease changes nothing.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError, create_model

from conversations.errors import ToolError
from conversations.states import FinishReason


@dataclass(slots=True)
class TurnEffects:
    finish_reason: FinishReason | None = None
    handoff_reason: str | None = None
    facts: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ToolContext:
    conversation_id: uuid.UUID
    customer_id: uuid.UUID
    idempotency_key: str
    effects: TurnEffects = field(default_factory=TurnEffects)


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    args_model: type[BaseModel]
    fn: Callable[..., str]
    timeout: float

    def schema(self) -> dict[str, Any]:
        """OpenAI function-calling schema."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.args_model.model_json_schema(),
            },
        }

    def call(self, ctx: ToolContext, arguments: dict[str, Any]) -> str:
        try:
            args = self.args_model.model_validate(arguments)
        except ValidationError as exc:
            raise ToolError(f"invalid arguments for {self.name}: {exc}") from None
        # A thread cannot be killed: past the limit the model is told and the turn goes on.
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"tool-{self.name}")
        try:
            future = pool.submit(self.fn, ctx, **args.model_dump())
            return str(future.result(timeout=self.timeout))
        except FutureTimeout:
            raise ToolError(f"{self.name} took longer than {self.timeout}s") from None
        finally:
            pool.shutdown(wait=False)


def tool(*, timeout: float = 10.0, name: str | None = None) -> Callable[[Callable[..., str]], Tool]:
    """Make ``fn(ctx: ToolContext, **typed_args) -> str`` a tool the agent can call."""

    def wrap(fn: Callable[..., str]) -> Tool:
        params = list(inspect.signature(fn).parameters.values())[1:]  # first one is ctx
        hints = inspect.get_annotations(fn, eval_str=True)
        fields: dict[str, Any] = {
            p.name: (hints[p.name], ... if p.default is p.empty else p.default) for p in params
        }
        model = create_model(f"{fn.__name__}_args", **fields)
        doc = inspect.getdoc(fn) or fn.__name__
        return Tool(name or fn.__name__, doc, model, fn, timeout)

    return wrap


@tool(timeout=1.0)
def end_conversation(ctx: ToolContext, reason: str = "") -> str:
    """End the conversation: the customer said goodbye or nothing is left to do."""
    ctx.effects.finish_reason = FinishReason.AGENT
    return "the conversation will end after this reply"


@tool(timeout=1.0)
def handoff_to_human(ctx: ToolContext, reason: str) -> str:
    """Hand the conversation to a human operator; you stay silent until they hand it back."""
    ctx.effects.handoff_reason = reason or "customer asked for a human"
    return "a human operator will take over after this reply"


@tool(timeout=1.0)
def remember(ctx: ToolContext, fact: str) -> str:
    """Remember a fact about the customer for later conversations (kept two weeks)."""
    fact = fact.strip()
    if not fact:
        raise ToolError("nothing to remember")
    if fact not in ctx.effects.facts:  # a retried turn may call twice
        ctx.effects.facts.append(fact)
    return "remembered"


BUILTIN_TOOLS: tuple[Tool, ...] = (end_conversation, handoff_to_human, remember)


class Toolbox:
    """The tools of one turn, bound to its context."""

    def __init__(self, tools: tuple[Tool, ...], ctx: ToolContext) -> None:
        self.tools = {t.name: t for t in tools}
        self.ctx = ctx

    def call(self, name: str, arguments: dict[str, Any]) -> str:
        found = self.tools.get(name)
        if found is None:
            raise ToolError(f"no tool named {name!r}")
        return found.call(self.ctx, arguments)

    def schemas(self) -> list[dict[str, Any]]:
        return [t.schema() for t in self.tools.values()]
