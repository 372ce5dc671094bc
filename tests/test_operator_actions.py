"""Operator API for timeouts and conversation actions, over HTTP on the real services."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from api.app import create_app
from conversations.db import session_factory
from conversations.models import OutboxRow
from conversations.operators import actions_on
from conversations.settings import Settings
from conversations.wakeup import SWEEP_QUEUE, WRAPUP_TASK, CeleryWaker
from tests.conftest import API_KEY, queued
from tests.factories import ingest_sms

AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
def client(db: Engine, settings: Settings, waker: CeleryWaker) -> Iterator[TestClient]:
    with TestClient(create_app(settings, db, waker), raise_server_exceptions=False) as c:
        yield c


def test_put_get_delete_timeouts_with_audit_trail(client: TestClient, db: Engine) -> None:
    cid = ingest_sms(db, "hi").conversation_id
    put = client.put(
        "/v1/timeouts",
        json={
            "channel": "sms",
            "inactivity": "PT2H",
            "nudge_before": 600,
            "closing_message": "Bye!",
        },
        headers=AUTH,
    )
    assert put.status_code == 200, put.text
    assert put.json()["inactivity"] == "2h" and put.json()["nudge_before"] == "10m"
    assert put.json()["recompute"] == "queued"

    listed = client.get("/v1/timeouts", headers=AUTH).json()
    assert listed["defaults"] == {"sms": "1d", "email": "3d", "chat": "30m", "other": "1d"}
    [p] = listed["policies"]
    assert (p["scope"], p["inactivity"], p["closing_message"]) == ("channel sms", "2h", "Bye!")

    assert client.put("/v1/timeouts", json={"inactivity": None}, headers=AUTH).status_code == 200
    assert client.delete("/v1/timeouts", params={"channel": "sms"}, headers=AUTH).status_code == 200
    missing = client.delete("/v1/timeouts", params={"channel": "sms"}, headers=AUTH)
    assert missing.status_code == 404 and "channel sms" in missing.json()["detail"]

    history = client.get("/v1/timeouts/history", headers=AUTH).json()
    assert [
        (
            h["scope"],
            h["actor"],
            (h["old"] or {}).get("inactivity"),
            (h["new"] or {}).get("inactivity"),
        )
        for h in history
    ] == [
        ("channel sms", "tests", "2h", None),
        ("global default", "tests", None, "never"),
        ("channel sms", "tests", None, "2h"),
    ]
    assert client.get(f"/v1/conversations/{cid}", headers=AUTH).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"inactivity": -5}, "inactivity"),
        ({"inactivity": 0}, "inactivity"),
        ({"inactivity": "soon"}, "inactivity"),
        ({}, "inactivity"),
        ({"inactivity": "1h", "channel": "fax"}, "channel"),
        ({"inactivity": "1h", "nudge_before": "2h"}, "nudge_before"),
        ({"inactivity": "1h", "nudge_before": "-1m"}, "nudge_before"),
    ],
)
def test_nonsense_timeouts_are_422_naming_the_field(
    client: TestClient, body: dict[str, object], field: str
) -> None:
    response = client.put("/v1/timeouts", json=body, headers=AUTH)
    assert response.status_code == 422
    assert field in response.text
    assert client.get("/v1/timeouts", headers=AUTH).json()["policies"] == []


def test_finish_twice_is_409_and_wraps_up_once(
    client: TestClient, db: Engine, settings: Settings
) -> None:
    cid = ingest_sms(db, "hi").conversation_id
    first = client.post(f"/v1/conversations/{cid}/finish", headers=AUTH)
    assert first.status_code == 200
    assert (first.json()["status"], first.json()["finish_reason"]) == ("finished", "api")
    second = client.post(
        f"/v1/conversations/{cid}/finish", json={"reason": "operator"}, headers=AUTH
    )
    assert second.status_code == 409 and "already finished" in second.json()["detail"]
    assert queued(settings.effective_broker_url, SWEEP_QUEUE) == [(WRAPUP_TASK, [str(cid)])]
    assert (
        client.post(
            "/v1/conversations/00000000-0000-0000-0000-000000000000/finish", headers=AUTH
        ).status_code
        == 404
    )


def test_handoff_human_reply_and_handback(client: TestClient, db: Engine) -> None:
    cid = ingest_sms(db, "hi").conversation_id
    taken = client.post(f"/v1/conversations/{cid}/handoff", json={"reason": "VIP"}, headers=AUTH)
    assert taken.status_code == 200
    assert (taken.json()["status"], taken.json()["handoff_reason"]) == ("handoff", "VIP")
    assert taken.json()["expires_at"] is None
    assert client.post(f"/v1/conversations/{cid}/handoff", headers=AUTH).status_code == 409

    reply = client.post(
        f"/v1/conversations/{cid}/messages", json={"text": "Hi, Sam here."}, headers=AUTH
    )
    assert reply.status_code == 201
    with session_factory(db)() as s:
        row = s.get_one(OutboxRow, reply.json()["outbox_id"])
    assert (row.body, row.to_address, row.channel) == ("Hi, Sam here.", "+14155550100", "sms")
    blank = client.post(f"/v1/conversations/{cid}/messages", json={"text": "  "}, headers=AUTH)
    assert blank.status_code == 422

    back = client.post(f"/v1/conversations/{cid}/handback", headers=AUTH)
    assert back.status_code == 200 and back.json()["status"] == "suspended"
    assert back.json()["expires_at"] is not None
    assert client.post(f"/v1/conversations/{cid}/handback", headers=AUTH).status_code == 409

    # Audited as the console's actions are, under the calling key's name; refusals are not.
    with session_factory(db)() as s:
        trail = [(a.actor, a.action) for a in actions_on(s, cid)]
    assert trail == [("api:tests", "take_over"), ("api:tests", "reply"), ("api:tests", "hand_back")]


def test_patch_overrides_the_timeout_of_one_conversation(client: TestClient, db: Engine) -> None:
    cid = ingest_sms(db, "hi").conversation_id
    never = client.patch(f"/v1/conversations/{cid}", json={"inactivity": None}, headers=AUTH)
    assert never.status_code == 200
    assert never.json()["expires_at"] is None and never.json()["timeout_override_set"]
    short = client.patch(f"/v1/conversations/{cid}", json={"inactivity": "PT5M"}, headers=AUTH)
    assert short.json()["timeout_override_seconds"] == 300
    back = client.patch(f"/v1/conversations/{cid}", json={"inactivity": "default"}, headers=AUTH)
    assert not back.json()["timeout_override_set"] and back.json()["expires_at"]
    bad = client.patch(f"/v1/conversations/{cid}", json={"inactivity": "-1"}, headers=AUTH)
    assert bad.status_code == 422 and "inactivity" in bad.text
    with session_factory(db)() as s:
        assert s.scalars(select(OutboxRow)).all() == []
