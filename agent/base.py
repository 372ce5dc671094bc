"""The interface every agent implements, offline or backed by a model."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from agent.tools import Toolbox
from conversations.transcript import MessageView
from memory.store import Memory, MemoryKind


@dataclass(frozen=True, slots=True)
class TurnContext:
    """What the agent sees. Built from a bounded read, never the whole history."""

    conversation_id: uuid.UUID
    customer_id: uuid.UUID
    service: str
    channel: str
    turn_number: int
    customer_message_count: int  # inbound messages in this conversation, these included
    instructions: str
    history: tuple[MessageView, ...]
    new_messages: tuple[MessageView, ...]
    earlier: tuple[MessageView, ...] = ()  # opening of a long conversation, beyond history
    memory: tuple[Memory, ...] = ()  # the customer's window, newest first
    customer_name: str | None = None
    customer_attributes: dict[str, object] = field(default_factory=dict)
    context: dict[str, object] = field(default_factory=dict)  # given by the outbound API
    opening: bool = False  # write the first message of an outbound conversation

    def remembered(self, prefix: str) -> str | None:
        """The newest remembered fact starting with ``prefix`` (e.g. "name: ")."""
        for entry in self.memory:
            if entry.kind == MemoryKind.FACT and entry.text.startswith(prefix):
                return entry.text[len(prefix) :].strip() or None
        return None


class Agent(Protocol):
    def run_turn(self, context: TurnContext, tools: Toolbox) -> list[str]:
        """Return the replies to send. Side effects go through ``tools`` only."""
        ...

    def summarize(self, messages: Sequence[MessageView], finish_reason: str | None) -> str:
        """A short summary of a finished conversation, for wrap-up and memory."""
        ...
