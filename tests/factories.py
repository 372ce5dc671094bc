"""Small builders for test data, through the same code paths production uses."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Engine

from conversations.db import transaction
from conversations.envelope import InboundMessage
from conversations.ingest import IngestResult, ingest
from conversations.settings import Settings
from conversations.types import utcnow

DEFAULTS = Settings().default_policies()
HELP = Settings().help_text


def sms(text: str, sender: str = "+14155550100", sid: str | None = None) -> InboundMessage:
    return InboundMessage(
        channel="sms",
        provider_id=sid or f"SM{uuid.uuid4().hex}",
        sender=sender,
        recipient="+15550006666",
        text=text,
    )


def ingest_sms(
    engine: Engine,
    text: str,
    sender: str = "+14155550100",
    sid: str | None = None,
    *,
    now: datetime | None = None,
    service: str = "default",
) -> IngestResult:
    with transaction(engine) as session:
        return ingest(
            session,
            sms(text, sender, sid),
            service=service,
            now=now or utcnow(),
            defaults=DEFAULTS,
            help_text=HELP,
        )
