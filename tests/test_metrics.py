"""GET /metrics as Prometheus reads it, and JSON log lines, after real work.

A real scenario runs through the real database and broker: a signed SMS webhook, a turn, the
reply's delivery to the fake Twilio, and a webhook with a bad signature; then /metrics is
scraped through the app and parsed with prometheus-client's own parser. Counters are process
totals, so each assertion is on how much one moved.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, select

from agent.catalog import AgentCatalog
from api.app import create_app
from cli.logs import configure_logging
from conversations.db import session_factory
from conversations.models import Message, OutboxRow
from conversations.settings import Settings
from conversations.wakeup import CeleryWaker
from tests.factories import ingest_sms
from tests.test_twilio_webhooks import signed, twilio_form
from workers.deliver import deliver
from workers.turn import run_turn

ROOT = Path(__file__).resolve().parent.parent
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def client(db: Engine, settings: Settings, waker: CeleryWaker) -> Iterator[TestClient]:
    with TestClient(create_app(settings, db, waker), raise_server_exceptions=False) as c:
        yield c


def scrape(client: TestClient, **headers: str) -> Samples:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def pending_outbox(engine: Engine) -> list[int]:
    with session_factory(engine)() as s:
        return list(s.scalars(select(OutboxRow.id).where(OutboxRow.status == "pending")))


def test_a_webhook_turn_and_delivery_move_the_counters_and_the_backlog_empties(
    client: TestClient, db: Engine, settings: Settings, waker: CeleryWaker
) -> None:
    before = scrape(client)
    assert value(before, "dormouse_messages_pending") == 0
    assert value(before, "dormouse_outbox_oldest_pending_age_seconds") == 0

    form = twilio_form("hello metrics", sid="SM" + "m" * 32)
    assert client.post("/webhooks/twilio/sms", data=form, headers=signed(form)).status_code == 200
    forged = twilio_form("forged", sid="SM" + "f" * 32)
    bad = {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"}
    assert client.post("/webhooks/twilio/sms", data=forged, headers=bad).status_code == 403

    waiting = scrape(client)
    assert value(waiting, "dormouse_messages_pending") == 1
    assert value(waiting, "dormouse_messages_pending_oldest_age_seconds") >= 0
    assert value(waiting, "dormouse_backlog_query_ok") == 1

    with session_factory(db)() as s:
        conversation_id = s.scalars(select(Message.conversation_id)).one()
    agents = AgentCatalog(default=None)
    assert run_turn(conversation_id, engine=db, agents=agents, settings=settings, waker=waker)

    replied = scrape(client)
    assert value(replied, "dormouse_messages_pending") == 0
    assert value(replied, "dormouse_messages_pending_oldest_age_seconds") == 0
    assert value(replied, "dormouse_outbox_rows", status="pending") == 1
    [outbox_id] = pending_outbox(db)
    assert deliver(outbox_id, engine=db, settings=settings) == "sent"

    after = scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("dormouse_webhooks_accepted_total", channel="sms") == 1
    assert moved("dormouse_webhooks_rejected_total", channel="sms", reason="signature") == 1
    assert moved("dormouse_turn_duration_seconds_count", outcome="committed") >= 1
    assert moved("dormouse_reply_latency_seconds_count", channel="sms") >= 1
    assert moved("dormouse_deliveries_total", channel="sms", outcome="sent") >= 1
    assert value(after, "dormouse_outbox_rows", status="pending") == 0
    assert value(after, "dormouse_outbox_oldest_pending_age_seconds") == 0
    # Declared for the event webhooks (another branch increments it): the family is there.
    response = client.get("/metrics").text
    assert "# TYPE dormouse_event_deliveries_total counter" in response


def test_metrics_token_closes_the_endpoint_to_scrapes_without_it(
    db: Engine, settings: Settings, waker: CeleryWaker
) -> None:
    closed = settings.model_copy(update={"metrics_token": "scrape-secret"})
    with TestClient(create_app(closed, db, waker)) as client:
        assert client.get("/metrics").status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert client.get("/metrics", headers=wrong).status_code == 401
        samples = scrape(client, Authorization="Bearer scrape-secret")
    assert value(samples, "dormouse_backlog_query_ok") == 1


def test_metrics_is_not_in_the_api_schema(client: TestClient) -> None:
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]


def test_one_scrape_sums_what_every_process_of_the_directory_counted(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two other processes (as a prefork worker's children are) count into one directory.
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    count = (
        "from conversations.metrics import DELIVERIES, QUARANTINES;"
        "DELIVERIES.labels('email', 'failed').inc(2); QUARANTINES.labels('attempts').inc()"
    )
    for _ in range(2):
        subprocess.run([sys.executable, "-c", count], env=env, cwd=ROOT, check=True)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))

    samples = scrape(client)

    assert value(samples, "dormouse_deliveries_total", channel="email", outcome="failed") == 4
    assert value(samples, "dormouse_quarantines_total", reason="attempts") == 2
    assert value(samples, "dormouse_messages_pending") == 0  # the database's gauges too


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_logs_are_one_object_per_line_with_the_turns_conversation(
    db: Engine,
    settings: Settings,
    waker: CeleryWaker,
    capsys: pytest.CaptureFixture[str],
    restored_logging: None,
) -> None:
    configure_logging("INFO", "json")
    cid = ingest_sms(db, "hello json").conversation_id
    run_turn(cid, engine=db, agents=AgentCatalog(default=None), settings=settings, waker=waker)
    logging.getLogger("tests").warning("a line\nwith a newline")

    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object

    turn = next(r for r in records if r["logger"] == "workers.turn")
    assert turn["conversation_id"] == str(cid)
    assert "committed" in turn["message"]
    assert {"timestamp", "level", "process", "pid", "logger", "message"} <= set(turn)
    mine = next(r for r in records if r["logger"] == "tests")
    assert mine["message"] == "a line\nwith a newline" and "conversation_id" not in mine
