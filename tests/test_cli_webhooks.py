"""``dormouse webhooks``: add, list, test against a real receiver, rotate, remove."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from click.testing import Result
from sqlalchemy import Engine

from tests.factories import ingest_sms
from tests.fakes.event_receiver import EventReceiver


@pytest.fixture
def receiver() -> Iterator[EventReceiver]:
    server = EventReceiver().start()
    yield server
    server.stop()


def test_add_list_test_rotate_remove(
    dormouse_cli: Callable[..., Result], receiver: EventReceiver
) -> None:
    added = dormouse_cli("webhooks", "add", receiver.url, "--event", "message.received")
    assert added.exit_code == 0, added.output
    lines = dict(line.split(None, 1) for line in added.output.splitlines() if line.strip())
    endpoint_id, secret = lines["id"], lines["secret"].split()[0]
    assert secret.startswith("whsec_")
    receiver.secrets = [secret]

    listed = dormouse_cli("webhooks", "list")
    assert endpoint_id[:8] in listed.output and "message.received" in listed.output

    tested = dormouse_cli("webhooks", "test", endpoint_id[:8])
    assert tested.exit_code == 0 and "answered 200" in tested.output, tested.output
    [post] = receiver.taken()
    assert post.body["type"] == "webhook.test" and receiver.refused == []

    rotated = dormouse_cli("webhooks", "rotate", endpoint_id[:8])
    new = rotated.output.split()[1]
    receiver.secrets = [secret, new]  # both sign during the overlap
    assert dormouse_cli("webhooks", "test", endpoint_id[:8]).exit_code == 0
    assert len(receiver.taken()) == 2 and receiver.refused == []

    receiver.answer_next("500")
    failed = dormouse_cli("webhooks", "test", endpoint_id[:8])
    assert failed.exit_code == 1 and "answered 500" in failed.output

    assert dormouse_cli("webhooks", "remove", endpoint_id).exit_code == 0
    assert "no webhook endpoints" in dormouse_cli("webhooks", "list").output


def test_bad_urls_are_refused_in_one_line(dormouse_cli: Callable[..., Result]) -> None:
    refused = dormouse_cli("webhooks", "add", "ftp://example.com/x")
    assert refused.exit_code == 1 and "not an http(s) URL" in refused.output


def test_deliveries_name_the_event_and_say_which_wait_behind_an_earlier_one(
    dormouse_cli: Callable[..., Result], receiver: EventReceiver, db: Engine
) -> None:
    added = dormouse_cli("webhooks", "add", receiver.url, "--event", "message.received")
    endpoint_id = dict(line.split(None, 1) for line in added.output.splitlines())["id"]
    for text in ("first", "second"):  # one conversation: its events go out in order
        ingest_sms(db, text, sender="+14155550240")

    said = dormouse_cli("webhooks", "deliveries", endpoint_id[:8]).output.splitlines()
    assert said[0].split()[:4] == ["id", "event", "type", "status"]  # a header row
    newest, oldest = said[1], said[2]
    assert "message.received" in newest and "message.received" in oldest
    first_id = oldest.split()[0]
    assert f"waits behind #{first_id}" in newest and "next" not in newest
    assert "next " in oldest
