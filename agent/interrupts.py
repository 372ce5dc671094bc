"""Double texting: a customer's message that arrives while the turn waits on the model.

With ``DOUBLE_TEXTING_<CHANNEL>=interrupt`` the model request in flight is cancelled, the run
starts again from the journal (every step it finished is replayed, none is asked or run
again), and the step that was cancelled is asked again with the new message added: one
answer to both. A tool call that has started is never interrupted; a message arriving
during one is added to the next model request. With ``coalesce`` the message waits for the
next turn, as it always did.

Where a message was added is kept on the journal (the ``messages_through`` of each model
step), so a retry after a crash adds it at the same step and its replay matches.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from pydantic_ai.messages import ModelRequest, UserPromptPart

from conversations.errors import DormouseError
from conversations.transcript import MessageView

# A flood of messages must not keep a turn from ever answering (each cancelled request may
# still be billed): past this many interruptions, later messages wait for the next turn.
MAX_INTERRUPTIONS = 3


class Interrupted(DormouseError):
    """A customer's message arrived during a model request, which was cancelled."""

    def __init__(self, through: int) -> None:
        super().__init__(f"a message (up to id {through}) arrived during the model request")
        self.through = through


class Arrivals(Protocol):
    """The customer messages of this conversation that no turn answered yet."""

    interrupting: bool  # whether an arrival cancels a model request (the channel's policy)

    def watching(self) -> AbstractAsyncContextManager[None]:
        """Listen for this conversation's new messages for as long as the run lasts."""
        ...

    async def newer(self, after: int) -> int | None:
        """The newest unanswered message after ``after``, if any (one read)."""
        ...

    async def wait(self, after: int) -> int:
        """Wait until a message after ``after`` is stored; its id (the newest)."""
        ...

    def missed(self) -> None:
        """An arrival was seen but not used (the response came with it): look again."""
        ...

    async def take(self, after: int, through: int) -> Sequence[MessageView]:
        """The messages in (``after``, ``through``], now answered by this turn."""
        ...

    async def interrupted(self, after: int, through: int) -> None:
        """Say on the conversation's events that the messages in (``after``, ``through``]
        interrupted the turn (fenced on the turn's lease)."""
        ...


def add_messages(ctx: Any, request_context: Any, added: Sequence[MessageView]) -> None:
    """Add the customer's new messages to the run's history (what later steps are asked)
    and to this request, as one user request after what the model was about to answer."""
    if not added:
        return
    request = ModelRequest(parts=[UserPromptPart(m.body) for m in added])
    ctx.messages.append(request)
    if request_context.messages is not ctx.messages:
        request_context.messages.append(request)
