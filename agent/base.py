"""Dormouse's own agent protocol, and what a turn shows an agent.

Model-backed agents are Pydantic AI agents (``agent/runtime.py`` runs them); this protocol is
for agents that need no model, like the offline default.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from agent.deps import TurnDeps
from conversations.transcript import MessageView
from memory.store import Memory, MemoryKind

if TYPE_CHECKING:
    from pydantic_ai import Agent as PydanticAgent

    from agent.tools import Toolbox


@dataclass(frozen=True, slots=True)
class TurnContext:
    """What the agent sees. Built from a bounded read, never the whole history."""

    deps: TurnDeps
    customer_message_count: int  # inbound messages in this conversation, these included
    history: tuple[MessageView, ...]
    new_messages: tuple[MessageView, ...]
    earlier: tuple[MessageView, ...] = ()  # opening of a long conversation, beyond history
    memory: tuple[Memory, ...] = ()  # the customer's window, newest first
    opening: bool = False  # write the first message of an outbound conversation

    def remembered(self, prefix: str) -> str | None:
        """The newest remembered fact starting with ``prefix`` (e.g. "name: ")."""
        for entry in self.memory:
            if entry.kind == MemoryKind.FACT and entry.text.startswith(prefix):
                return entry.text[len(prefix) :].strip() or None
        return None


class Agent(Protocol):
    def run_turn(self, context: TurnContext, tools: Toolbox) -> list[str]:
        """Return the replies to send. Effects on the conversation go through ``tools``."""
        ...

    def summarize(self, messages: Sequence[MessageView], finish_reason: str | None) -> str:
        """A short summary of a finished conversation, for wrap-up and memory."""
        ...


AnyAgent: TypeAlias = "PydanticAgent[TurnDeps, Any] | Agent"
