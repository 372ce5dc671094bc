"""The offline, deterministic, extractive summary of a finished conversation."""

from __future__ import annotations

from collections.abc import Sequence

from conversations.transcript import MessageView


def _clip(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def extractive_summary(messages: Sequence[MessageView], finish_reason: str | None) -> str:
    customer = [m for m in messages if m.role == "customer"]
    replies = [m for m in messages if m.direction == "outbound"]
    parts = [f"The customer wrote {len(customer)} message(s); {len(replies)} repl(ies) were sent."]
    if customer:
        parts.append(f'First: "{_clip(customer[0].body)}".')
    if len(customer) > 1:
        parts.append(f'Last: "{_clip(customer[-1].body)}".')
    parts.append(f"Ended: {finish_reason or 'unknown'}.")
    return " ".join(parts)
