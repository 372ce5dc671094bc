"""GET /v1/services lists what `dormouse agents` lists: the services a chat can be opened with."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.app import create_app
from conversations.settings import Settings
from conversations.wakeup import CeleryWaker
from tests.conftest import API_KEY

REPO = Path(__file__).resolve().parents[1]


def test_services_name_each_agent_model_and_tools(
    db: Engine,
    settings: Settings,
    waker: CeleryWaker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(REPO))
    monkeypatch.setenv("ACME_MODEL", "test")
    # The example reads ACME_MODEL when imported: another test may have imported it already.
    monkeypatch.delitem(sys.modules, "examples.acme.agents", raising=False)
    acme = settings.model_copy(
        update={
            "dormouse_agents": "examples.acme.agents",
            "sms_services": "+15005550009=billing",
        }
    )
    with TestClient(create_app(acme, db, waker), raise_server_exceptions=False) as client:
        assert client.get("/v1/services").status_code == 401
        answer = client.get("/v1/services", headers={"Authorization": f"Bearer {API_KEY}"})
    assert answer.status_code == 200
    services = {s["name"]: s for s in answer.json()}
    assert sorted(services) == ["billing", "default", "sales", "support"]
    assert services["default"] == {
        "name": "default",
        "agent": "offline",
        "model": None,
        "tools": ["end_conversation", "handoff_to_human", "remember"],
        "default": True,
    }
    assert services["billing"]["agent"] == "offline"  # routed, named by no agent: the default
    support = services["support"]
    assert support["agent"] == "pydantic-ai" and support["model"] == "test:test"
    assert support["tools"][0] == "lookup_order" and not support["default"]
