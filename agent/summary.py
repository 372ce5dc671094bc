"""The offline, deterministic, extractive summary of a finished conversation."""

from __future__ import annotations

from collections.abc import Sequence

from conversations.transcript import MessageView


def _clip(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def extractive_summary(messages: Sequence[MessageView], finish_reason: str | None) -> str:
    customer = [m for m in messages if m.role == "customer"]
    # A nudge or a closing message answers nothing: not a reply.
    replies = [m for m in messages if m.direction == "outbound" and not m.automatic]
    wrote = f"{len(customer)} message" + ("" if len(customer) == 1 else "s")
    sent = "1 reply was sent" if len(replies) == 1 else f"{len(replies)} replies were sent"
    parts = [f"The customer wrote {wrote}; {sent}."]
    if customer:
        parts.append(f'First: "{_clip(customer[0].body)}".')
    if len(customer) > 1:
        parts.append(f'Last: "{_clip(customer[-1].body)}".')
    parts.append(f"Ended: {finish_reason or 'unknown'}.")
    return " ".join(parts)
