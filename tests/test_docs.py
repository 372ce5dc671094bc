"""/docs: the console's security headers, nothing inline for them to block, and a switch."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.app import create_app
from conversations.settings import Settings
from conversations.wakeup import CeleryWaker


def test_docs_carry_the_consoles_headers_and_run_no_inline_script(
    db: Engine, settings: Settings, waker: CeleryWaker
) -> None:
    client = TestClient(create_app(settings, db, waker))
    docs = client.get("/docs")
    assert docs.status_code == 200
    console = client.get("/console/sign-in")
    for header in ("content-security-policy", "x-content-type-options", "referrer-policy"):
        assert docs.headers[header] == console.headers[header], header
    assert "frame-ancestors 'none'" in docs.headers["content-security-policy"]
    # script-src 'self': every script the page runs is a file of this origin.
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", docs.text, re.S)
    assert scripts and all('src="/' in attrs and not body.strip() for attrs, body in scripts)
    for attrs, _ in scripts:
        src = re.search(r'src="([^"]+)"', attrs)
        assert src and client.get(src.group(1)).status_code == 200
    assert client.get("/openapi.json").status_code == 200


def test_docs_enabled_false_leaves_out_docs_redoc_and_the_schema(
    db: Engine, settings: Settings, waker: CeleryWaker
) -> None:
    closed = settings.model_copy(update={"docs_enabled": False})
    client = TestClient(create_app(closed, db, waker))
    for path in ("/docs", "/redoc", "/openapi.json", "/docs/assets/swagger-ui.css"):
        assert client.get(path).status_code == 404, path
    assert client.get("/healthz").status_code == 200


def test_docs_enabled_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCS_ENABLED", "false")
    assert Settings().docs_enabled is False
