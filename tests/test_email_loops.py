"""Automatic mail that slipped past the loop rules: stored, never answered (no mail loops).

Each shape is a reply to our own mail, as a real auto-responder's would be, so the webhook
answers "recorded" (stored in the conversation, no turn woken) instead of "accepted".
Real database, broker and SMTP server.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.app import create_app
from conversations.settings import Settings
from conversations.wakeup import TURN_QUEUE, CeleryWaker
from tests.conftest import queued
from tests.test_email_channel import answer, mail, messages, post


@pytest.fixture
def client(db: Engine, mail_settings: Settings, waker: CeleryWaker) -> Iterator[TestClient]:
    with TestClient(create_app(mail_settings, db, waker), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def thread(
    client: TestClient, db: Engine, mail_settings: Settings, waker: CeleryWaker
) -> tuple[str, str]:
    """A conversation we answered: its id and our reply's Message-ID."""
    cid = post(client, mail("Where is my kettle?")).json()["conversation_id"]
    answer(db, mail_settings, waker, cid)
    return cid, f"<{messages(db, cid)[-1].provider_id}>"


def raw_mail(headers: list[tuple[str, str]], body: str = "Thank you for your message.") -> bytes:
    """A mail with exactly these header fields, repeats and order kept."""
    lines = [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n" + body + "\r\n").encode()


def reply_to_us(in_reply_to: str, *extra: tuple[str, str]) -> bytes:
    return raw_mail(
        [
            ("From", "Ada <ada@example.com>"),
            ("To", "support@acme.test"),
            ("Subject", "Re: Kettle"),
            ("Message-ID", f"<{uuid.uuid4().hex}@example.com>"),
            ("In-Reply-To", in_reply_to),
            ("MIME-Version", "1.0"),
            ("Content-Type", "text/plain; charset=utf-8"),
            *extra,
        ]
    )


AUTOMATIC = {
    "second Precedence header": [("Precedence", "normal"), ("Precedence", "bulk")],
    "second Auto-Submitted header": [("Auto-Submitted", "no"), ("Auto-Submitted", "auto-replied")],
    "X-Loop": [("X-Loop", "helpdesk@example.com")],
    "Exchange inbox rule": [
        ("X-Auto-Response-Suppress", "All"),
        ("X-MS-Exchange-Inbox-Rules-Loop", "ada@example.com"),
    ],
    "SES notification": [
        ("List-Unsubscribe", "<https://example.com/unsubscribe?u=1>"),
        ("Feedback-ID", "1.eu-west-1.abc=:AmazonSES"),
    ],
    "SES outgoing": [
        ("List-Unsubscribe", "<mailto:unsubscribe@example.com>"),
        ("X-SES-Outgoing", "2024.01.01-54.240.0.1"),
    ],
}


@pytest.mark.parametrize("extra", AUTOMATIC.values(), ids=AUTOMATIC.keys())
def test_automatic_mail_is_recorded_and_wakes_no_turn(
    client: TestClient,
    db: Engine,
    mail_settings: Settings,
    thread: tuple[str, str],
    extra: list[tuple[str, str]],
) -> None:
    cid, ours = thread
    before = queued(mail_settings.broker_url, TURN_QUEUE)

    response = post(client, reply_to_us(ours, *extra))

    assert response.status_code == 200
    said = response.json()
    assert (said["status"], said["conversation_id"]) == ("recorded", cid)
    assert said["automatic"]
    stored = messages(db, cid)[-1]
    assert (stored.role, stored.inbound_state) == ("system", "ignored")
    assert queued(mail_settings.broker_url, TURN_QUEUE) == before


PERSONAL = {
    "Exchange inbox rule alone": [("X-MS-Exchange-Inbox-Rules-Loop", "ada@example.com")],
    "suppress header alone": [("X-Auto-Response-Suppress", "All")],
    "List-Unsubscribe alone": [("List-Unsubscribe", "<https://example.com/unsubscribe>")],
    "Feedback-ID alone": [("Feedback-ID", "1:ada:gmail")],
    "Precedence normal twice": [("Precedence", "normal"), ("Precedence", "normal")],
}


@pytest.mark.parametrize("extra", PERSONAL.values(), ids=PERSONAL.keys())
def test_a_persons_reply_with_one_of_those_headers_alone_is_answered(
    client: TestClient, thread: tuple[str, str], extra: list[tuple[str, str]]
) -> None:
    said = post(client, reply_to_us(thread[1], *extra)).json()

    assert said["status"] == "accepted" and "automatic" not in said
