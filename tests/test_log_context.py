"""Log lines name ids, never who: no address and no message text, errors included."""

from __future__ import annotations

import logging
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from agent.catalog import AgentCatalog
from api.app import create_app
from conversations.db import session_factory
from conversations.log_context import RedactFilter, redact
from conversations.models import Conversation, Message, OutboxRow
from conversations.settings import Settings
from conversations.types import utcnow
from conversations.wakeup import CeleryWaker
from tests.fakes.smtp_server import FakeSmtp
from tests.fakes.twilio_api import FakeTwilio
from tests.test_email_channel import mail, post
from tests.test_twilio_webhooks import signed, twilio_form
from workers.deliver import deliver
from workers.turn import run_turn

PHONE = "+14155550188"
EMAIL = "grace@example.org"
TEXT = "my door code is 4711-quokka"


@pytest.fixture
def mail_settings(settings: Settings, fake_smtp: FakeSmtp) -> Settings:
    return settings.model_copy(
        update={"smtp_url": fake_smtp.url, "email_inbound_secret": "inbound-secret-for-tests"}
    )


@pytest.fixture
def client(db: Engine, mail_settings: Settings, waker: CeleryWaker) -> Iterator[TestClient]:
    with TestClient(create_app(mail_settings, db, waker), raise_server_exceptions=False) as c:
        yield c


def answer_and_deliver(db: Engine, settings: Settings, waker: CeleryWaker) -> list[str]:
    """Run every conversation's turn, then deliver what they wrote; the delivery outcomes."""
    with session_factory(db)() as s:
        conversations = s.scalars(select(Conversation.id)).all()
    for cid in conversations:
        run_turn(cid, engine=db, agents=AgentCatalog(), settings=settings, waker=waker)
    with session_factory(db)() as s:
        rows = s.scalars(select(OutboxRow.id).order_by(OutboxRow.id)).all()
    return [deliver(row, engine=db, settings=settings) for row in rows]


def test_ingest_and_failed_deliveries_log_ids_not_addresses_or_text(
    client: TestClient,
    db: Engine,
    mail_settings: Settings,
    waker: CeleryWaker,
    fake_twilio: FakeTwilio,
    fake_smtp: FakeSmtp,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    form = twilio_form(TEXT, sid="SM" + uuid.uuid4().hex, From=PHONE)
    assert client.post("/webhooks/twilio/sms", data=form, headers=signed(form)).status_code == 200
    assert post(client, mail(TEXT, sender=f"Grace <{EMAIL}>")).status_code == 200
    fake_twilio.script = [21211]  # "The 'To' number +1555… is not a valid phone number."
    fake_smtp.handler.mode = "reject"  # "550 5.1.1 <grace@…>: Recipient address rejected"

    assert answer_and_deliver(db, mail_settings, waker) == ["failed", "failed"]

    failures = [r for r in caplog.records if "failed permanently" in r.getMessage()]
    assert len(failures) == 2  # the failures are logged, by outbox id
    with session_factory(db)() as s:  # the provider's full words stay on the row
        errors = s.scalars(select(OutboxRow.last_error)).all()
    assert any(PHONE in (e or "") for e in errors) and any(EMAIL in (e or "") for e in errors)
    # Everything but the fake mail server's own log (aiosmtpd's "mail.log": not Dormouse).
    ours = "\n".join(
        caplog.handler.format(r) for r in caplog.records if not r.name.startswith("mail.log")
    )
    for needle in (PHONE, PHONE.removeprefix("+"), EMAIL, TEXT):
        assert needle not in ours


def test_the_log_handler_redacts_what_a_library_logs_on_its_own(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("some.library")
    redacting = RedactFilter()
    caplog.handler.addFilter(redacting)
    try:
        log.warning("refused %s and %s", "+1 (555) 555-0100", "Ada.L@Example.com")
        try:
            raise ValueError(f"cannot send to {EMAIL}")
        except ValueError:
            log.exception("send failed")
    finally:
        caplog.handler.removeFilter(redacting)
    assert "refused [phone] and [email]" in caplog.text
    assert "cannot send to [email]" in caplog.text
    assert "555" not in caplog.text and EMAIL not in caplog.text


@pytest.mark.parametrize(
    ("said", "kept"),
    [
        (
            "outbox 12 failed: SMTP 550: <ada@example.com> refused",
            "outbox 12 failed: SMTP 550: <[email]> refused",
        ),
        ("The 'To' number +15555550100 is not valid", "The 'To' number [phone] is not valid"),
        ("whatsapp:+44 20 7946 0958 opted out", "whatsapp:[phone] opted out"),
        # Ids, counts, times and durations are left alone.
        ("turn 3 of 4f1c2e9a-1b2c-4d5e-8f90-123456789abc at 2026-12-04 19:00:01", None),
        ("retry in 0:00:02.5 after 12345678 ms", None),
    ],
)
def test_redact_takes_addresses_and_leaves_ids(said: str, kept: str | None) -> None:
    assert redact(said) == (kept if kept is not None else said)


@pytest.mark.parametrize(
    ("setup", "logger"),
    [
        (
            "from workers.app import app\n"
            "app.log.setup_logging_subsystem(loglevel='INFO', colorize=False)\n",
            "some.library",
        ),
        (
            "import logging.config\n"
            "from cli.logs import uvicorn_log_config\n"
            "logging.config.dictConfig(uvicorn_log_config())\n",
            "uvicorn.error",
        ),
    ],
    ids=["celery", "uvicorn"],
)
def test_workers_and_the_api_logging_through_their_own_handlers_redact_too(
    setup: str, logger: str
) -> None:
    # LOG_FORMAT=text: Celery (a worker) and uvicorn (the API) write through handlers of
    # their own. Set up in a process of its own, so this one's logging stays as it is.
    line = f"logging.getLogger({logger!r}).error('refused {PHONE} and {EMAIL}')\n"
    script = f"import logging\n{setup}{line}"
    ran = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "refused [phone] and [email]" in ran.stderr
    assert PHONE not in ran.stderr and EMAIL not in ran.stderr


def test_a_database_error_never_quotes_the_text_it_was_given(db: Engine) -> None:
    # A message for a conversation that does not exist: the foreign key refuses it. What the
    # error says ends up in tracebacks and log lines, so the statement's values must not.
    row = {
        "conversation_id": uuid.uuid4(),
        "direction": "inbound",
        "role": "customer",
        "channel": "sms",
        "address": PHONE,
        "body": TEXT,
        "created_at": utcnow(),
    }
    with pytest.raises(IntegrityError) as refused, db.begin() as conn:
        conn.execute(insert(Message), [row])
    assert TEXT not in str(refused.value) and PHONE not in str(refused.value)
