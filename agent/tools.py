"""Tools: the built-in ones every agent gets, and ``tool`` for the business's own.

A tool is a Pydantic AI tool over ``RunContext[TurnDeps]``: its arguments are validated from
its signature, its docstring is what the model reads, and invalid arguments go back to the
model to correct. ``Toolbox`` gives the same built-ins to agents on Dormouse's own protocol.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import cache
from typing import Any, overload

from pydantic_ai import FunctionToolset, RunContext, Tool

from agent.deps import ToolCall, TurnDeps
from conversations.errors import ToolError

# A tool that names no limit of its own gets this many seconds before it is abandoned.
DEFAULT_TOOL_TIMEOUT = 10.0

ToolFunction = Callable[..., Any]


@overload
def tool(fn: ToolFunction, /) -> Tool[TurnDeps]: ...
@overload
def tool(
    *, timeout: float = DEFAULT_TOOL_TIMEOUT, name: str | None = None, retries: int | None = None
) -> Callable[[ToolFunction], Tool[TurnDeps]]: ...
def tool(
    fn: ToolFunction | None = None,
    /,
    *,
    timeout: float = DEFAULT_TOOL_TIMEOUT,
    name: str | None = None,
    retries: int | None = None,
) -> Tool[TurnDeps] | Callable[[ToolFunction], Tool[TurnDeps]]:
    """Make ``fn(ctx: RunContext[TurnDeps], **typed_args)`` a tool, with a time limit.

    Use it bare (``@tool``) or with options (``@tool(timeout=5)``); pass the result in
    ``Agent(tools=[...])``. Past ``timeout`` seconds the call is abandoned and the model told.
    """

    def wrap(function: ToolFunction) -> Tool[TurnDeps]:
        return Tool(function, takes_ctx=True, name=name, timeout=timeout, max_retries=retries)

    return wrap(fn) if fn is not None else wrap


def end_conversation(ctx: RunContext[TurnDeps], reason: str = "") -> str:
    """End the conversation: the customer said goodbye or nothing is left to do."""
    return ctx.deps.effects.end(reason)


def handoff_to_human(ctx: RunContext[TurnDeps], reason: str) -> str:
    """Hand the conversation to a human operator; you stay silent until they hand it back."""
    return ctx.deps.effects.handoff(reason)


def remember(ctx: RunContext[TurnDeps], fact: str) -> str:
    """Remember a fact about the customer for later conversations (kept two weeks)."""
    return ctx.deps.effects.remember(fact)


BUILTIN_NAMES = ("end_conversation", "handoff_to_human", "remember")


@cache
def builtin_toolset() -> FunctionToolset[TurnDeps]:
    """The built-in tools, added to every Pydantic AI agent's run. Built once: their schemas
    come from signatures and docstrings, about 3 ms of CPU a turn if rebuilt every run."""
    return FunctionToolset(
        [
            tool(timeout=1.0)(end_conversation),
            tool(timeout=1.0)(handoff_to_human),
            tool(timeout=1.0)(remember),
        ]
    )


class Toolbox:
    """The built-in tools for an agent on Dormouse's own protocol; each call is recorded."""

    def __init__(self, deps: TurnDeps) -> None:
        self.deps = deps
        effects = deps.effects
        self._tools: dict[str, Callable[..., str]] = {
            "end_conversation": effects.end,
            "handoff_to_human": effects.handoff,
            "remember": effects.remember,
        }

    def call(self, name: str, arguments: dict[str, Any]) -> str:
        found = self._tools.get(name)
        if found is None:
            raise ToolError(f"no built-in tool named {name!r}")
        started = time.perf_counter()
        result = found(**arguments)
        self.deps.effects.tool_calls.append(
            ToolCall(name, dict(arguments), result, None, _ms_since(started))
        )
        return result


def _ms_since(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
