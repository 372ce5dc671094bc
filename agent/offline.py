"""The offline default agent: deterministic, no network, on the same interface as a model.

It makes rehydration visible from a phone: every reply quotes what the customer just wrote
and counts the messages they have sent in this conversation, which only a correct read of
the persisted conversation can know.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from agent.base import TurnContext
from agent.summary import extractive_summary
from agent.tools import Toolbox
from conversations.transcript import MessageView

GOODBYE_WORDS = {"bye", "goodbye"}
NAME = re.compile(r"\bmy name is ([A-Za-z][\w'-]{0,40})", re.IGNORECASE)
HANDOFF_WORDS = {"human", "agent"}


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower()))


class OfflineAgent:
    def summarize(self, messages: Sequence[MessageView], finish_reason: str | None) -> str:
        return extractive_summary(messages, finish_reason)

    def run_turn(self, context: TurnContext, tools: Toolbox) -> list[str]:
        texts = [m.body for m in context.new_messages]
        words = set().union(*(_words(t) for t in texts)) if texts else set()
        name = context.remembered("name: ") or context.deps.customer_name
        for text in texts:
            if said := NAME.search(text):
                name = said.group(1).capitalize()
                tools.call("remember", {"fact": f"name: {name}"})
        hello = f"Hi {name}!" if name else "Hi!"
        greeting = f"{hello} You're talking to the {context.deps.service} assistant. "
        opener = greeting if context.deps.turn_number == 1 else ""
        if context.opening:
            about = context.deps.context.get("reason") or context.deps.context.get("topic")
            return [greeting.strip() + (f" I'm writing about {about}." if about else "")]

        if words & GOODBYE_WORDS:
            tools.call("end_conversation", {"reason": "customer said goodbye"})
            return [f"{opener}Goodbye, and thanks for writing!"]
        if words & HANDOFF_WORDS:
            tools.call("handoff_to_human", {"reason": "customer asked for a person"})
            return [f"{opener}I'm passing you to a person on our team; they'll reply here."]

        written = [t.strip() for t in texts if t.strip()]
        # An MMS of pictures alone has no text to quote.
        quoted = (
            "You said " + " / ".join(f'"{t}"' for t in written)
            if written
            else "You sent something without text"
        )
        count = context.customer_message_count
        plural = "message" if count == 1 else "messages"
        return [f"{opener}{quoted}. That's {count} {plural} from you in this conversation."]
