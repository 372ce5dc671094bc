"""MIME bombs: a mail's parts and their nesting are counted before it is parsed, so that no
message costs more than a bounded time (parsing 40,000 empty parts took 26 s of CPU)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.app import create_app
from conversations.settings import Settings
from conversations.wakeup import CeleryWaker
from tests.test_email_channel import conversations, post

HEAD = b"From: ada@example.com\r\nTo: support@acme.test\r\nSubject: Kettle\r\nMIME-Version: 1.0\r\n"
BEARER = {"Authorization": "Bearer inbound-secret-for-tests"}


@pytest.fixture
def client(db: Engine, mail_settings: Settings, waker: CeleryWaker) -> Iterator[TestClient]:
    with TestClient(create_app(mail_settings, db, waker), raise_server_exceptions=False) as c:
        yield c


def flat(parts: int) -> bytes:
    """A mail of ``parts`` tiny text parts side by side (36 bytes each)."""
    body = b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(parts))
    return HEAD + b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + body + b"--b--\r\n"


def nested(depth: int) -> bytes:
    """A mail of multiparts ``depth`` deep, each holding the next (and embedded messages)."""
    inner = b"Content-Type: text/plain\r\n\r\nThe lid is cracked.\r\n"
    for level in range(depth, 0, -1):
        if level % 3 == 0:  # an embedded message counts as a level too
            inner = b"Content-Type: message/rfc822\r\n\r\n" + HEAD + inner
            continue
        b = b"b%d" % level
        inner = (
            b"Content-Type: multipart/mixed; boundary=" + b + b"\r\n\r\n"
            b"--" + b + b"\r\n" + inner + b"--" + b + b"--\r\n"
        )
    return HEAD + inner


def test_forty_thousand_parts_are_refused_unparsed_naming_the_limit(
    client: TestClient, db: Engine
) -> None:
    bomb = flat(40_000)
    assert len(bomb) < 2_000_000  # far under EMAIL_MAX_BYTES
    response = post(client, bomb)
    assert response.status_code == 413
    assert "100 MIME parts (EMAIL_MAX_PARTS)" in response.json()["detail"]
    assert conversations(db) == []


def test_parts_counted_whatever_the_line_endings(client: TestClient) -> None:
    for ending in (b"\n", b"\r"):  # the parser splits at bare CR and LF, so the scan does
        response = post(client, flat(200).replace(b"\r\n", ending))
        assert response.status_code == 413


def test_parts_nested_too_deep_are_refused_naming_the_limit(client: TestClient, db: Engine) -> None:
    response = post(client, nested(11))
    assert response.status_code == 400
    assert "deeper than 10 levels (EMAIL_MAX_DEPTH)" in response.json()["detail"]
    assert conversations(db) == []


def test_a_bounce_of_forty_thousand_status_blocks_is_refused_unparsed(
    client: TestClient, db: Engine
) -> None:
    # Each blank-line separated block of a message/delivery-status is a part to the parser.
    blocks = b"".join(b"Final-Recipient: rfc822; a@example.com\r\n\r\n" for _ in range(40_000))
    bomb = (
        HEAD + b"Content-Type: multipart/report; report-type=delivery-status; boundary=r\r\n\r\n"
        b"--r\r\nContent-Type: text/plain\r\n\r\nUndeliverable.\r\n"
        b"--r\r\nContent-Type: message/delivery-status\r\n\r\n" + blocks + b"--r--\r\n"
    )
    response = post(client, bomb)
    assert response.status_code == 413 and "EMAIL_MAX_PARTS" in response.json()["detail"]
    assert conversations(db) == []


def test_a_mail_within_the_limits_is_accepted(client: TestClient, db: Engine) -> None:
    assert post(client, flat(99)).json()["status"] == "accepted"
    deep = post(client, nested(10).replace(b"ada@", b"grace@"))
    assert deep.json()["status"] == "accepted"
    assert len(conversations(db)) == 2


def test_a_form_post_of_forty_thousand_fields_is_refused_before_it_is_parsed(
    client: TestClient, db: Engine
) -> None:
    fields = b"".join(
        b'--f\r\nContent-Disposition: form-data; name="x%d"\r\n\r\ny\r\n' % i for i in range(40_000)
    )
    response = client.post(
        "/webhooks/email",
        content=fields + b"--f--\r\n",
        headers={"Content-Type": "multipart/form-data; boundary=f", **BEARER},
    )
    assert response.status_code == 413 and "EMAIL_MAX_PARTS" in response.json()["detail"]
    assert conversations(db) == []


def test_the_limits_are_settings(db: Engine, mail_settings: Settings, waker: CeleryWaker) -> None:
    tight = mail_settings.model_copy(update={"email_max_parts": 5, "email_max_depth": 2})
    with TestClient(create_app(tight, db, waker), raise_server_exceptions=False) as c:
        assert post(c, flat(6)).status_code == 413
        assert post(c, nested(3)).status_code == 400
        assert post(c, flat(5)).status_code == 200


def test_a_content_type_with_non_ascii_bytes_is_read_as_the_parser_reads_it(
    client: TestClient,
) -> None:
    # Found by the fuzzer: C2 80 (UTF-8 for U+0080) in a Content-Type made the part count a 500.
    raw = (
        b"From: ada@example.com\r\nTo: support@localhost\r\nSubject: hi\r\n"
        b'Content-Type: multipart/mixed; boundary="\xc2\x80b"\r\n\r\n'
        b"--\xc2\x80b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--\xc2\x80b--\r\n"
    )
    answer = post(client, raw)
    assert answer.status_code == 200, answer.text
