"""The /v1 lists page by cursor: every item once, newest first, and filter by service."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.app import create_app
from conversations.settings import Settings
from conversations.wakeup import CeleryWaker
from tests.conftest import API_KEY


@pytest.fixture
def client(db: Engine, settings: Settings, waker: CeleryWaker) -> Iterator[TestClient]:
    with TestClient(create_app(settings, db, waker), raise_server_exceptions=False) as c:
        c.headers["Authorization"] = f"Bearer {API_KEY}"
        yield c


def start(client: TestClient, service: str, to: str) -> str:
    answer = client.post(
        "/v1/conversations",
        json={"service": service, "channel": "sms", "to": to, "message": f"hello from {service}"},
    )
    assert answer.status_code == 201, answer.text
    conversation_id: str = answer.json()["id"]
    return conversation_id


def every_page(client: TestClient, url: str) -> tuple[list[list[Any]], list[str]]:
    """Follow Link rel=next from ``url`` to the last page: the pages and the URLs read."""
    pages, urls = [], [url]
    while True:
        answer = client.get(urls[-1])
        assert answer.status_code == 200, answer.text
        pages.append(answer.json())
        if "link" not in answer.headers:
            assert "x-next-cursor" not in answer.headers
            return pages, urls
        link = answer.headers["link"]
        assert link.endswith('>; rel="next"') and answer.headers["x-next-cursor"] in link
        urls.append(link[1 : link.index(">")])


def test_conversations_page_by_cursor_each_once_newest_first(client: TestClient) -> None:
    started = [start(client, "billing", f"+1415555020{i}") for i in range(5)]
    pages, _ = every_page(client, "/v1/conversations?limit=2")
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [c["id"] for p in pages for c in p] == list(reversed(started))


def test_a_conversation_that_changes_while_paging_is_not_repeated(client: TestClient) -> None:
    started = [start(client, "billing", f"+1415555021{i}") for i in range(4)]
    first = client.get("/v1/conversations?limit=2")
    assert [c["id"] for c in first.json()] == started[:1:-1]
    client.post(f"/v1/conversations/{started[3]}/handoff")  # moves back to the top
    rest = client.get("/v1/conversations", params={"cursor": first.headers["x-next-cursor"]})
    assert [c["id"] for c in rest.json()] == [started[1], started[0]]


def test_lists_filter_by_service(client: TestClient) -> None:
    sales = start(client, "sales", "+14155550220")
    start(client, "support", "+14155550221")
    only = client.get("/v1/conversations", params={"service": "sales"}).json()
    assert [c["id"] for c in only] == [sales]
    outbox = client.get("/v1/outbox", params={"service": "sales"}).json()
    assert [row["conversation_id"] for row in outbox] == [sales]


def test_status_open_lists_every_conversation_not_finished(client: TestClient) -> None:
    kept = start(client, "sales", "+14155550230")
    handed = start(client, "sales", "+14155550231")
    done = start(client, "sales", "+14155550232")
    client.post(f"/v1/conversations/{handed}/handoff")
    client.post(f"/v1/conversations/{done}/finish")
    listed = client.get("/v1/conversations", params={"status": "open"})
    assert listed.status_code == 200, listed.text
    assert {c["id"] for c in listed.json()} == {kept, handed}


def test_a_misspelt_query_parameter_is_refused_naming_it_like_a_misspelt_field(
    client: TestClient,
) -> None:
    start(client, "sales", "+14155550233")
    refused = client.get("/v1/conversations", params={"chanel": "sms"})
    assert refused.status_code == 422
    assert "'chanel'" in refused.text and "channel" in refused.text
    assert client.get("/v1/outbox", params={"stauts": "sent"}).status_code == 422
    assert client.get("/v1/conversations", params={"channel": "sms"}).status_code == 200


def test_outbox_and_timeout_history_page_by_cursor(client: TestClient) -> None:
    for i in range(3):
        start(client, "billing", f"+1415555023{i}")
    pages, _ = every_page(client, "/v1/outbox?limit=2")
    ids = [row["id"] for p in pages for row in p]
    assert [len(p) for p in pages] == [2, 1] and ids == sorted(ids, reverse=True)
    for hours in (1, 2, 3):
        put = client.put("/v1/timeouts", json={"channel": "sms", "inactivity": f"{hours}h"})
        assert put.status_code == 200, put.text
    pages, _ = every_page(client, "/v1/timeouts/history?limit=2")
    assert [c["new"]["inactivity"] for p in pages for c in p] == ["3h", "2h", "1h"]


@pytest.mark.parametrize("cursor", ["nonsense", "W10", "WyJ4Il0"])  # garbage, [], ["x"]
def test_a_cursor_the_list_did_not_answer_is_a_422_naming_it(
    client: TestClient, cursor: str
) -> None:
    for url in ("/v1/conversations", "/v1/outbox", "/v1/timeouts/history"):
        answer = client.get(url, params={"cursor": cursor})
        assert answer.status_code == 422, (url, answer.text)
        assert answer.json()["detail"].startswith("cursor:")
