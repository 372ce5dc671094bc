"""One list of channels: nothing accepts a channel that nothing can deliver."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.app import create_app
from channels.registry import CHANNELS as IMPLEMENTED
from cli.main import cli
from conversations.channel_names import CHANNEL_NAMES
from conversations.settings import Settings
from conversations.wakeup import CeleryWaker
from tests.conftest import API_KEY


@pytest.fixture
def client(db: Engine, settings: Settings, waker: CeleryWaker) -> Iterator[TestClient]:
    with TestClient(create_app(settings, db, waker), raise_server_exceptions=False) as c:
        c.headers["Authorization"] = f"Bearer {API_KEY}"
        yield c


def test_every_listed_channel_has_an_implementation_and_no_other() -> None:
    assert set(IMPLEMENTED) == set(CHANNEL_NAMES)


def test_a_channel_nothing_delivers_is_refused_by_the_api_naming_the_known_ones(
    client: TestClient,
) -> None:
    started = client.post(
        "/v1/conversations", json={"service": "default", "channel": "whatsapp", "to": "u-1"}
    )
    assert started.status_code == 422
    assert "unknown channel 'whatsapp'; known: sms, email, chat" in started.text
    assert client.get("/v1/conversations", params={"channel": "whatsapp"}).status_code == 422
    assert (
        client.put("/v1/timeouts", json={"channel": "whatsapp", "inactivity": 60}).status_code
        == 422
    )


def test_the_schema_lists_the_channels(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    start = schema["components"]["schemas"]["StartIn"]["properties"]["channel"]
    assert start["enum"] == list(CHANNEL_NAMES)


def test_the_cli_offers_only_the_listed_channels() -> None:
    result = CliRunner().invoke(
        cli, ["send", "--service", "x", "--channel", "whatsapp", "--to", "u"]
    )
    assert result.exit_code == 2
    assert "'whatsapp' is not one of 'sms', 'email', 'chat'" in result.output


def test_the_api_serves_every_registered_channels_webhooks(client: TestClient) -> None:
    # Ask the app itself: an unsigned POST to a served path is refused by the channel's own
    # checks (403/400), never "not found".
    for name, registered in IMPLEMENTED.items():
        paths = {getattr(route, "path", None) for route in registered.router.routes} - {None}
        assert paths, f"channel {name} has no webhook route"
        for path in paths:
            answer = client.post(str(path), content=b"")
            assert answer.status_code not in (404, 405), f"channel {name}: {path} not served"
