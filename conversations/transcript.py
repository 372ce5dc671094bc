"""What an agent is given of a conversation's messages (the turn reads them into this)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class MessageView:
    """A stored message as a turn's agent sees it."""

    id: int
    direction: str
    role: str
    channel: str
    body: str
    created_at: datetime
    # Sent by no turn and no person: a timeout's nudge or closing message, a quarantine notice.
    automatic: bool = False
