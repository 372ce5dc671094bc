"""Dormouse's public face for agent authors: import from here, not from the packages.

import dormouse
from pydantic_ai import Agent, RunContext

@dormouse.tool(timeout=5)
def lookup_order(ctx: RunContext[dormouse.TurnDeps], order_id: str) -> str: ...

agents = {"support": Agent("openai:gpt-4o-mini", deps_type=dormouse.TurnDeps,
                           tools=[lookup_order])}
"""

from agent.base import Agent, TurnContext
from agent.deps import TurnDeps, TurnEffects
from agent.tools import Toolbox, tool

__all__ = ["Agent", "Toolbox", "TurnContext", "TurnDeps", "TurnEffects", "tool"]
