"""What one turn gives its agent (``TurnDeps``) and what the turn decided (``TurnEffects``).

Agent authors see ``TurnDeps`` as ``ctx.deps`` in their Pydantic AI tools. A crashed turn is
retried; the step journal replays every tool result it recorded, but a tool that was running
when its worker died has none and runs again: ``idempotency_key`` is stable across those
retries (and different for every turn), for tools with side effects outside Dormouse.
Effects on the conversation itself are recorded on ``effects`` and applied by the turn's
fenced commit, so a turn that loses its lease changes nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from conversations.states import FinishReason


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool call of a turn, as recorded on the conversation."""

    name: str
    arguments: dict[str, Any]
    result: str | None
    error: str | None
    duration_ms: int
    replayed: bool = False  # taken from the step journal by a retry, not run again

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "arguments": self.arguments,
            "result": self.result,
            "error": self.error,
            "duration_ms": self.duration_ms,
            "replayed": self.replayed,
        }


@dataclass(slots=True)
class TurnEffects:
    """What the built-in tools decided and which tools ran; applied only by the commit."""

    finish_reason: FinishReason | None = None
    handoff_reason: str | None = None
    facts: list[str] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)

    def end(self, reason: str = "") -> str:
        self.finish_reason = FinishReason.AGENT
        return "the conversation will end after this reply"

    def handoff(self, reason: str) -> str:
        self.handoff_reason = reason.strip() or "customer asked for a human"
        return "a human operator will take over after this reply"

    def remember(self, fact: str) -> str:
        fact = fact.strip()
        if not fact:
            raise ValueError("nothing to remember")
        if fact not in self.facts:  # a model may say the same thing twice in one turn
            self.facts.append(fact)
        return "remembered"


@dataclass(slots=True)
class TurnDeps:
    """The ``deps`` of every agent run: ``Agent(..., deps_type=dormouse.TurnDeps)``."""

    conversation_id: uuid.UUID
    customer_id: uuid.UUID
    service: str
    channel: str
    turn_number: int
    idempotency_key: str
    customer_name: str | None = None
    customer_attributes: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)  # given by the outbound API
    effects: TurnEffects = field(default_factory=TurnEffects)
