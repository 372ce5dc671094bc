"""A customer emails; real API, worker and beat processes answer over SMTP (aiosmtpd), and the
customer's reply to that mail continues the same conversation."""

from __future__ import annotations

from collections.abc import Callable
from email.message import EmailMessage

import httpx
import pytest

from tests.e2e.stack import Stack
from tests.fakes.smtp_server import FakeSmtp

pytestmark = pytest.mark.e2e

SECRET = "e2e-email-secret"


def send_mail(stack: Stack, text: str, **headers: str) -> httpx.Response:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "Ada <ada@example.com>", "help@acme.test", "Kettle"
    # The receiving service's verdict, as it prepends it: EMAIL_REQUIRE_AUTH=dmarc (the
    # default with DATABASE_URL set) answers only mail it vouches for.
    mail["Authentication-Results"] = "mx.acme.test; dmarc=pass header.from=example.com"
    for name, value in headers.items():
        mail[name.replace("_", "-")] = value
    mail.set_content(text)
    return httpx.post(
        stack.base + "/webhooks/email",
        content=bytes(mail),
        headers={"Content-Type": "message/rfc822", "Authorization": f"Bearer {SECRET}"},
        timeout=10,
    )


def test_email_round_trip_threads_both_ways(
    make_stack: Callable[..., Stack], fake_smtp: FakeSmtp
) -> None:
    stack = make_stack(
        SMTP_URL=fake_smtp.url,
        EMAIL_FROM="Acme <help@acme.test>",
        EMAIL_SERVICES="help@acme.test=helpdesk",
        EMAIL_INBOUND_SECRET=SECRET,
    ).start(workers=1)

    first = send_mail(stack, "Where is my kettle?", Message_ID="<k1@example.com>")
    assert first.status_code == 200 and first.json()["status"] == "accepted"
    [reply] = fake_smtp.wait_for(1)
    assert reply.message["In-Reply-To"] == "<k1@example.com>"
    assert reply.message["Subject"] == "Re: Kettle"
    assert "Where is my kettle?" in reply.message.get_body(("plain",)).get_content()

    second = send_mail(
        stack,
        "Thursday is fine.\n\nOn Mon, Acme <help@acme.test> wrote:\n> ...\n",
        Message_ID="<k2@example.com>",
        In_Reply_To=reply.message["Message-ID"],
    )
    assert second.json()["conversation_id"] == first.json()["conversation_id"]
    answer = fake_smtp.wait_for(2)[1].message
    assert answer["In-Reply-To"] == "<k2@example.com>"
    assert answer["References"].split() == [reply.message["Message-ID"], "<k2@example.com>"]

    detail = stack.conversation(first.json()["conversation_id"])
    assert (detail["service"], detail["channel"]) == ("helpdesk", "email")
    assert [m["body"] for m in detail["messages"] if m["direction"] == "inbound"] == [
        "Where is my kettle?",
        "Thursday is fine.",
    ]
