"""Bodies a /v1 route cannot read: a 4xx naming the problem, never a 500 (found by
Schemathesis: text/plain, or multipart/form-data without a boundary)."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.app import create_app
from conversations.settings import Settings
from conversations.wakeup import CeleryWaker
from tests.conftest import API_KEY

SOME = "/v1/conversations/00000000-0000-0000-0000-000000000000"


@pytest.fixture
def client(db: Engine, settings: Settings, waker: CeleryWaker) -> Iterator[TestClient]:
    with TestClient(create_app(settings, db, waker), raise_server_exceptions=False) as c:
        c.headers["Authorization"] = f"Bearer {API_KEY}"
        yield c


ROUTES = [
    ("post", SOME + "/finish"),
    ("post", SOME + "/handoff"),
    ("post", SOME + "/messages"),
    ("patch", SOME),
    ("post", "/v1/customers"),
    ("post", "/v1/conversations"),
]
BODIES = {
    "text/plain": ("text/plain", b"\x00\xff not json"),
    "form without boundary": ("multipart/form-data", b"--x\r\n\r\n\xff\r\n--x--\r\n"),
    "urlencoded": ("application/x-www-form-urlencoded", b"text=hi"),
}


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize(("content_type", "body"), BODIES.values(), ids=BODIES.keys())
def test_a_body_that_is_not_json_is_a_415_never_a_500(
    client: TestClient, method: str, path: str, content_type: str, body: bytes
) -> None:
    answer = client.request(method, path, content=body, headers={"Content-Type": content_type})
    assert answer.status_code == 415, answer.text
    refused = answer.json()
    assert refused["status"] == 415 and "application/json" in refused["detail"]
    assert answer.headers["content-type"] == "application/problem+json"


def test_json_nested_too_deep_for_the_decoder_is_a_4xx(client: TestClient) -> None:
    deep = client.post(
        "/v1/customers", content=b"[" * 30_000, headers={"Content-Type": "application/json"}
    )
    assert deep.status_code == 400 and deep.json()["status"] == 400
    cursor = base64.urlsafe_b64encode(b"[" * 30_000).decode()
    listed = client.get("/v1/conversations", params={"cursor": cursor})
    assert listed.status_code == 422 and "cursor" in listed.json()["detail"]


@pytest.mark.parametrize(
    ("path", "content_type"),
    [("/webhooks/email", "message/rfc822"), ("/webhooks/chat", "application/json")],
)
def test_an_upload_aborted_mid_body_is_one_log_line_not_a_traceback(
    db: Engine,
    mail_settings: Settings,
    waker: CeleryWaker,
    caplog: pytest.LogCaptureFixture,
    path: str,
    content_type: str,
) -> None:
    app = create_app(mail_settings, db, waker)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 5000),
        "headers": [
            (b"content-type", content_type.encode()),
            (b"content-length", b"5000"),
            (b"authorization", b"Bearer inbound-secret-for-tests"),
            (b"webhook-id", b"wh_1"),
            (b"webhook-timestamp", b"1"),
            (b"webhook-signature", b"v1,x"),
        ],
    }
    arrivals = iter(
        [
            {"type": "http.request", "body": b"From: ada@", "more_body": True},
            {"type": "http.disconnect"},
        ]
    )
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return next(arrivals)

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    caplog.set_level(logging.INFO)
    asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]

    said = [r for r in caplog.records if "disconnected" in r.getMessage()]
    assert len(said) == 1 and path in said[0].getMessage()
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
