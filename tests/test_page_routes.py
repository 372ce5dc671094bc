"""GET /chat serves the chat page from the package's own files, with nothing from elsewhere."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.app import create_app
from api.page_routes import STATIC
from conversations.settings import Settings
from conversations.wakeup import CeleryWaker


def test_the_page_and_its_assets_are_served_without_a_key(
    db: Engine, settings: Settings, waker: CeleryWaker
) -> None:
    with TestClient(create_app(settings, db, waker)) as client:
        page = client.get("/chat")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        policy = page.headers["content-security-policy"]
        assert "connect-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assets = re.findall(r'(?:href|src)="([^"]+)"', page.text)
        assert sorted(assets) == ["chat/assets/chat.css", "chat/assets/chat.js"]
        for asset in assets:
            assert client.get("/" + asset).status_code == 200
        assert "/chat" not in client.get("/openapi.json").json()["paths"]


def test_nothing_is_loaded_from_another_origin() -> None:
    for path in STATIC.iterdir():
        text = path.read_text()
        assert not re.search(r"https?://|@import|url\(", text), f"{path.name} loads from elsewhere"
