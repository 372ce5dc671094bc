"""Arbitrary bytes and mangled headers at the email webhook: a 2xx or a 4xx, never a 5xx,
and never a conversation without its message (nothing half-written)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select

from api.app import create_app
from conversations.db import session_factory
from conversations.models import Conversation, Message
from conversations.settings import Settings
from conversations.wakeup import CeleryWaker

CORPUS = sorted((Path(__file__).parent / "email_corpus").glob("*.eml"))
SECRET = "fuzz-secret"
HEADERS = [
    "From",
    "To",
    "Cc",
    "Subject",
    "Message-ID",
    "In-Reply-To",
    "References",
    "Date",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Content-Disposition",
    "Auto-Submitted",
    "Precedence",
    "MIME-Version",
]
NASTY = [
    "",
    "<",
    ">",
    "<<>>",
    "=?utf-8?b?////?=",
    "=?bogus?q?x?=",
    "multipart/mixed",
    'multipart/mixed; boundary=""',
    'text/plain; charset="\\"',
    "base64",
    "quoted-printable",
    "a@b",
    "@",
    "<a@b> <",
    "\x00",
    "\udcff",
    "é" * 200,
]

header_value = st.one_of(st.sampled_from(NASTY), st.text(max_size=120))
mangled = st.builds(
    lambda headers, body: (
        "".join(f"{n}: {v}\r\n" for n, v in headers).encode("utf-8", "surrogateescape")
        + b"\r\n"
        + body
    ),
    st.lists(st.tuples(st.sampled_from(HEADERS), header_value), max_size=12),
    st.binary(max_size=400),
)
flipped = st.builds(
    lambda sample, at, junk: (
        sample[: at % (len(sample) + 1)] + junk + sample[at % (len(sample) + 1) :]
    ),
    st.sampled_from([p.read_bytes() for p in CORPUS]),
    st.integers(min_value=0),
    st.binary(min_size=1, max_size=40),
)


@pytest.fixture
def client(db: Engine, settings: Settings, waker: CeleryWaker) -> Iterator[TestClient]:
    configured = settings.model_copy(update={"email_inbound_secret": SECRET})
    with TestClient(create_app(configured, db, waker), raise_server_exceptions=False) as c:
        yield c


def no_half_written_conversation(db: Engine) -> None:
    with session_factory(db)() as s:
        empty = s.scalar(
            select(func.count())
            .select_from(Conversation)
            .where(~select(Message.id).where(Message.conversation_id == Conversation.id).exists())
        )
    assert empty == 0


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.one_of(st.binary(max_size=600), mangled, flipped))
def test_no_input_makes_the_email_webhook_fail_or_write_half(
    client: TestClient, db: Engine, body: bytes
) -> None:
    response = client.post(
        "/webhooks/email",
        content=body,
        headers={"Content-Type": "message/rfc822", "Authorization": f"Bearer {SECRET}"},
    )
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.json()["detail"]  # the refusal names the problem
    no_half_written_conversation(db)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    content_type=st.sampled_from(
        ["multipart/form-data", "multipart/form-data; boundary=", "multipart/form-data; boundary=x"]
    ),
    body=st.binary(max_size=400),
)
def test_no_form_body_makes_the_email_webhook_fail(
    client: TestClient, db: Engine, content_type: str, body: bytes
) -> None:
    response = client.post(
        "/webhooks/email",
        content=body,
        headers={"Content-Type": content_type, "Authorization": f"Bearer {SECRET}"},
    )
    assert 400 <= response.status_code < 500, response.text
    no_half_written_conversation(db)
