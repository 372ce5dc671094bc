"""Bodies a /v1 route cannot read: a 4xx naming the problem, never a 500 (found by
Schemathesis: text/plain, or multipart/form-data without a boundary)."""

from __future__ import annotations

import base64
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
