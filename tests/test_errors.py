"""One error tree: every exception Dormouse defines is a DormouseError, mapped to HTTP once."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.app import create_app
from conversations.errors import DormouseError
from conversations.settings import Settings
from conversations.wakeup import CeleryWaker
from tests.conftest import API_KEY

PACKAGES = ["conversations", "memory", "agent", "channels", "workers", "scheduler", "api", "cli"]


@pytest.fixture
def client(db: Engine, settings: Settings, waker: CeleryWaker) -> Iterator[TestClient]:
    app = create_app(settings, db, waker)
    with TestClient(app, raise_server_exceptions=False) as c:
        c.headers["Authorization"] = f"Bearer {API_KEY}"
        yield c


def our_exceptions() -> list[type[BaseException]]:
    found = []
    for name in PACKAGES:
        package = importlib.import_module(name)
        for info in pkgutil.walk_packages(package.__path__, f"{name}."):
            if ".migrations" in info.name:
                continue
            module = importlib.import_module(info.name)
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if issubclass(cls, BaseException) and cls.__module__ == info.name:
                    found.append(cls)
    return found


def test_every_exception_of_ours_is_in_the_tree() -> None:
    outside = [
        f"{c.__module__}.{c.__qualname__}"
        for c in our_exceptions()
        # An interruption like KeyboardInterrupt (not an Exception) is no error to answer.
        if issubclass(c, Exception) and not issubclass(c, DormouseError)
    ]
    assert outside == []


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v1/conversations/00000000-0000-0000-0000-000000000000", 404),
        ("/v1/customers/00000000-0000-0000-0000-000000000000", 404),
    ],
)
def test_refusals_are_answered_with_their_status_and_a_detail(
    client: TestClient, path: str, status: int
) -> None:
    response = client.get(path)
    assert response.status_code == status
    assert "00000000-0000-0000-0000-000000000000" in response.json()["detail"]


def test_without_a_key_the_answer_is_401_with_a_challenge(client: TestClient) -> None:
    response = client.get("/v1/conversations", headers={"Authorization": ""})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("shape", [{}, [], True, {"hours": 2}])
def test_a_duration_of_the_wrong_shape_is_a_422_naming_the_field_never_a_500(
    client: TestClient, shape: object
) -> None:
    started = client.post(
        "/v1/conversations",
        json={"service": "s", "channel": "sms", "to": "+14155550123", "message": "hi"},
    )
    assert started.status_code == 201, started.text
    cid = started.json()["id"]
    answers = [
        client.patch(f"/v1/conversations/{cid}", json={"inactivity": shape}),
        client.put("/v1/timeouts", json={"inactivity": shape}),
        client.put("/v1/timeouts", json={"inactivity": "2h", "nudge_before": shape}),
    ]
    for answer, field in zip(answers, ["inactivity", "inactivity", "nudge_before"], strict=True):
        assert answer.status_code == 422, answer.text
        assert field in answer.text
    assert client.get(f"/v1/conversations/{cid}").json()["timeout_override_set"] is False


@pytest.mark.parametrize("external_id", ["", "crm-42"])
def test_a_taken_external_id_is_a_409_naming_its_owner(
    client: TestClient, external_id: str
) -> None:
    first = client.post("/v1/customers", json={"external_id": external_id})
    assert first.status_code == 201, first.text
    again = client.post("/v1/customers", json={"external_id": external_id})
    assert again.status_code == 409, again.text
    assert again.json()["customer_id"] == first.json()["id"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/conversations"),
        ("PUT", "/v1/timeouts"),
        ("PATCH", "/v1/conversations/not-a-uuid"),
        ("POST", "/v1/customers"),
    ],
)
def test_without_a_key_a_malformed_request_is_a_401_not_a_hint(
    client: TestClient, method: str, path: str
) -> None:
    answer = client.request(method, path, content=b"{not json", headers={"Authorization": ""})
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == "Bearer"


def test_an_api_body_over_max_api_bytes_is_a_413_before_it_is_read(
    client: TestClient, settings: Settings
) -> None:
    big = b'{"text": "' + b"x" * settings.max_api_bytes + b'"}'
    declared = client.post("/v1/customers", content=big)
    assert declared.status_code == 413 and "MAX_API_BYTES" in declared.text

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield big[: len(big) // 2]
        yield big[len(big) // 2 :]

    streamed = client.post("/v1/customers", content=chunks())
    assert streamed.status_code == 413 and "MAX_API_BYTES" in streamed.text


def test_a_422_quotes_a_snippet_of_the_input_and_names_unknown_fields(
    client: TestClient,
) -> None:
    long = client.post(
        "/v1/conversations",
        json={"service": "s", "channel": "sms", "to": "+14155550123", "message": "y" * 150_000},
    )
    assert long.status_code == 422
    assert len(long.content) < 2_000 and "150000 characters" in long.text
    unknown = client.post("/v1/customers", json={"name": "Ada", "nmae": "typo"})
    assert unknown.status_code == 422
    refused = unknown.json()
    [problem] = refused["errors"]
    assert problem["loc"] == ["body", "nmae"] and problem["type"] == "extra_forbidden"
    assert refused["detail"] == "nmae: Extra inputs are not permitted"


def test_every_refusal_has_one_shape(client: TestClient) -> None:
    """404, 409, 422 and the gate's 401 and 413: RFC 9457 problems, detail always a sentence."""
    first = client.post("/v1/customers", json={"external_id": "crm-1"})
    answers = [
        client.get("/v1/conversations/00000000-0000-0000-0000-000000000000"),
        client.post("/v1/customers", json={"external_id": "crm-1"}),
        client.put("/v1/timeouts", json={"inactivity": {}}),
        client.get("/v1/outbox", headers={"Authorization": "Bearer wrong"}),
        client.post("/v1/customers", content=b"{" + b" " * 300_000 + b"}"),
    ]
    assert [a.status_code for a in answers] == [404, 409, 422, 401, 413]
    for answer in answers:
        body = answer.json()
        assert answer.headers["content-type"] == "application/problem+json"
        assert body["status"] == answer.status_code and isinstance(body["detail"], str)
        assert body["title"] and body["detail"]
    assert answers[1].json()["customer_id"] == first.json()["id"]


def test_each_channel_states_its_own_text_limit(client: TestClient) -> None:
    def start(channel: str, to: str, text: str) -> Any:
        return client.post(
            "/v1/conversations",
            json={"service": "s", "channel": channel, "to": to, "message": text},
        )

    too_long = start("sms", "+14155550123", "x" * 1_601)
    assert too_long.status_code == 422
    assert "sms messages are at most 1,600 characters" in too_long.text
    mail = start("email", "ada@example.com", "a longer letter " * 125)  # 2,000 characters
    assert mail.status_code == 201, mail.text

    replied = client.post(
        f"/v1/conversations/{mail.json()['id']}/messages", json={"text": "y" * 5_000}
    )
    assert replied.status_code == 201, replied.status_code
    sms = start("sms", "+14155550124", "hello")
    refused = client.post(
        f"/v1/conversations/{sms.json()['id']}/messages", json={"text": "y" * 2_000}
    )
    assert refused.status_code == 422 and "at most 1,600" in refused.text


def test_a_body_that_is_not_json_is_a_422_saying_where(client: TestClient) -> None:
    answer = client.post(
        "/v1/customers", content=b'{"name": "Ada",}', headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 422
    refused = answer.json()
    assert refused["detail"].startswith("body: not valid JSON at character")
    assert refused["errors"][0]["loc"] == ["body"]
