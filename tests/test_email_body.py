"""What is stored as the customer's text, a rule per shape the reply stripper got wrong:
several inline text parts, "---" dividers, and "--Name" sign-offs. Real database."""

from __future__ import annotations

from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.app import create_app
from conversations.settings import Settings
from conversations.wakeup import CeleryWaker
from tests.test_email_channel import mail, messages, post


@pytest.fixture
def client(db: Engine, mail_settings: Settings, waker: CeleryWaker) -> Iterator[TestClient]:
    with TestClient(create_app(mail_settings, db, waker), raise_server_exceptions=False) as c:
        yield c


def stored(client: TestClient, db: Engine, raw: bytes) -> tuple[str, dict[str, object]]:
    """The body and metadata the webhook stored for ``raw``."""
    response = post(client, raw)
    assert response.status_code == 200 and response.json()["status"] == "accepted"
    message = messages(db, response.json()["conversation_id"])[-1]
    return message.body, message.meta


def test_every_inline_text_part_is_the_body_in_order(client: TestClient, db: Engine) -> None:
    # Apple Mail around an inline picture: text, image, text (and an inline footer part).
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "ada@example.com", "support@acme.test", "Kettle"
    m.make_mixed()
    for text in ("The lid is cracked, see:", "And the handle came off too.", "Ada"):
        part = EmailMessage()
        # Apple Mail names the pieces: an inline text/plain part is text, named or not.
        named = "part2.txt" if text.startswith("And") else None
        part.set_content(text, disposition="inline", filename=named)
        m.attach(part)
        if text.startswith("The lid"):
            m.add_attachment(b"\x89PNG...", maintype="image", subtype="png", filename="lid.png")
    body, meta = stored(client, db, bytes(m))
    assert body == "The lid is cracked, see:\n\nAnd the handle came off too.\n\nAda"
    assert meta["attachments"] == [{"name": "lid.png", "type": "image/png", "size": 7}]


def test_of_alternatives_only_the_plain_rendering_is_the_body(
    client: TestClient, db: Engine
) -> None:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "ada@example.com", "support@acme.test", "Kettle"
    m.set_content("The lid is cracked.")
    m.add_alternative("<p>The lid is cracked.</p>", subtype="html")
    m.add_attachment("notes", filename="notes.txt")
    body, meta = stored(client, db, bytes(m))
    assert body == "The lid is cracked."
    assert [a["name"] for a in meta["attachments"]] == ["notes.txt"]  # type: ignore[attr-defined,index]


@pytest.mark.parametrize(
    "text",
    [
        "Here is what happened:\n\n---\nThe lid cracked.\nThe handle came off.",
        "See what I sent before:\n\n----- Original\nThe lid cracked on Monday.",
        "Thanks for the quick help!\n\n--Ada",
    ],
    ids=["--- divider", "----- Original", "--Name"],
)
def test_lines_starting_with_two_dashes_but_no_space_are_the_customers_text(
    client: TestClient, db: Engine, text: str
) -> None:
    assert stored(client, db, mail(text))[0] == text


def test_the_rfc_3676_signature_delimiter_still_ends_the_text(
    client: TestClient, db: Engine
) -> None:
    body, _ = stored(client, db, mail("Thanks!\n\n-- \nAda Lovelace\nAnalytical Engines Ltd"))
    assert body == "Thanks!"


def test_a_divider_line_above_a_quoted_header_block_goes_with_the_quote(
    client: TestClient, db: Engine
) -> None:
    text = (
        "Yes, Thursday works.\n\n ------------------------------\n\n"
        "*From:* Acme Support [mailto:support@acme.test]\n*Sent:* Monday, 2 May 2016 10:00\n"
        "*To:* ada@example.com\n*Subject:* Kettle\n\nWhen may we collect it?\n"
    )
    assert stored(client, db, mail(text))[0] == "Yes, Thursday works."
