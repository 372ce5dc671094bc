"""An agent backed by any OpenAI-compatible chat completions endpoint (OpenAI, vLLM, Ollama…)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import httpx

from agent.base import TurnContext
from agent.summary import extractive_summary
from agent.tools import Toolbox
from conversations.errors import ModelError, ToolError
from conversations.states import Direction
from conversations.transcript import MessageView

MAX_TOOL_ROUNDS = 4


class OpenAICompatibleAgent:
    def __init__(self, base_url: str, model: str, api_key: str = "", timeout: float = 60.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.model = model
        self.http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)

    def run_turn(self, context: TurnContext, tools: Toolbox) -> list[str]:
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": _system_prompt(context)},
            *(_chat_message(m.direction, m.body) for m in context.history),
            *(_chat_message(m.direction, m.body) for m in context.new_messages),
        ]
        replies: list[str] = []
        for _ in range(MAX_TOOL_ROUNDS):
            choice = self._complete(messages, tools.schemas())
            message = choice.get("message") or {}
            if message.get("content"):
                replies.append(str(message["content"]))
            calls = message.get("tool_calls") or []
            if not calls:
                break
            messages.append(
                {"role": "assistant", "content": message.get("content"), "tool_calls": calls}
            )
            for call in calls:
                messages.append(
                    {
                        "role": "tool",
                        "tool_call_id": call.get("id", ""),
                        "content": _run(tools, call),
                    }
                )
        return replies

    def summarize(self, messages: Sequence[MessageView], finish_reason: str | None) -> str:
        transcript = "\n".join(f"{m.role}: {m.body}" for m in messages)
        prompt = [
            {
                "role": "system",
                "content": "Summarize this customer conversation in two or "
                "three sentences: what the customer wanted and how it ended.",
            },
            {"role": "user", "content": f"{transcript}\n\n(ended: {finish_reason})"},
        ]
        try:
            content = self._complete(prompt, [])["message"].get("content")
        except (ModelError, KeyError):
            content = None
        # A summary is worth having even when the model is down: fall back to extraction.
        return str(content) if content else extractive_summary(messages, finish_reason)

    def _complete(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": messages}
        if tools:
            body["tools"] = tools
        try:
            response = self.http.post("/chat/completions", json=body)
            response.raise_for_status()
            choice: dict[str, Any] = response.json()["choices"][0]
            return choice
        except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
            raise ModelError(f"model call failed: {exc!r}") from exc


def _run(tools: Toolbox, call: dict[str, Any]) -> str:
    fn = call.get("function") or {}
    try:
        arguments = json.loads(fn.get("arguments") or "{}")
        return tools.call(str(fn.get("name")), arguments)
    except (ToolError, ValueError) as exc:
        return f"error: {exc}"


def _chat_message(direction: str, body: str) -> dict[str, str]:
    role = "user" if direction == Direction.INBOUND else "assistant"
    return {"role": role, "content": body}


# How a reply should read on each medium; the channel shapes it again after the model.
MEDIUM = {
    "sms": "You are replying by SMS: keep it short, plain text, no markup.",
    "email": "You are replying by email: short paragraphs separated by blank lines, plain "
    "text, no subject line; it may be longer than a text message.",
}


def _system_prompt(context: TurnContext) -> str:
    parts = [
        context.instructions,
        f"Service: {context.service}. Channel: {context.channel}. "
        f"This is turn {context.turn_number} of the conversation.",
    ]
    if context.channel in MEDIUM:
        parts.append(MEDIUM[context.channel])
    if context.customer_name or context.customer_attributes:
        parts.append(
            f"Customer: {context.customer_name or 'unknown name'}; "
            f"attributes: {json.dumps(context.customer_attributes)}"
        )
    if context.memory:
        parts.append(
            "What you remember of this customer (newest first):\n"
            + "\n".join(f"- [{m.kind} {m.created_at:%Y-%m-%d}] {m.text}" for m in context.memory)
        )
    if context.earlier:
        parts.append(
            "How this conversation began:\n"
            + "\n".join(f"- {m.role}: {m.body}" for m in context.earlier)
        )
    if context.context:
        parts.append(f"Context from the business: {json.dumps(context.context)}")
    if context.opening:
        parts.append("Write the first message of this conversation to the customer.")
    return "\n\n".join(parts)
