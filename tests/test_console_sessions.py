"""Console sessions end on the server: a copied cookie stops working when its session ends
(sign-out, sign out everywhere, a new password, removal, expiry), across restarts too."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from api.app import create_app
from conversations.db import session_factory, transaction
from conversations.models import Conversation, OperatorSession
from conversations.operators import add_operator, remove_operator, set_password
from conversations.settings import Settings
from conversations.types import utcnow
from conversations.wakeup import CeleryWaker
from tests import test_console
from tests.factories import ingest_sms
from tests.test_console import PASSWORD, csrf, post, sign_in

client = test_console.client
COOKIE = "dormouse_console"


def another(client: TestClient) -> TestClient:
    """A second browser on the same server (its own cookie jar)."""
    return TestClient(client.app, base_url="http://dormouse.test", raise_server_exceptions=False)


def restarted(db: Engine, settings: Settings, waker: CeleryWaker) -> TestClient:
    """The API started anew on the same database (the cookie's key persists in DATA_DIR)."""
    return TestClient(
        create_app(settings, db, waker),
        base_url="http://dormouse.test",
        raise_server_exceptions=False,
    )


def signed_in(client: TestClient) -> bool:
    answer = client.get("/console/inbox", follow_redirects=False)
    assert answer.status_code in (200, 303)
    return answer.status_code == 200


def test_sign_out_ends_the_session_for_a_copied_cookie_and_its_form_token_after_a_restart(
    client: TestClient, db: Engine, settings: Settings, waker: CeleryWaker
) -> None:
    cid = ingest_sms(db, "hi").conversation_id
    assert sign_in(client).status_code == 303  # type: ignore[attr-defined]
    page = f"/console/conversations/{cid}"
    copied_cookie, copied_token = client.cookies[COOKIE], csrf(client, page)
    assert post(client, "/console/sign-out", page).status_code == 303  # type: ignore[attr-defined]
    assert not signed_in(client)

    thief = restarted(db, settings, waker)
    thief.cookies.set(COOKIE, copied_cookie, path="/console")
    assert not signed_in(thief)
    thief.cookies.set(COOKIE, copied_cookie, path="/console")
    acted = thief.post(f"{page}/take-over", data={"csrf": copied_token}, follow_redirects=False)
    assert acted.status_code == 401
    with session_factory(db)() as session:
        assert session.get_one(Conversation, cid).status != "handoff"


def test_a_session_survives_a_restart_until_it_ends(
    client: TestClient, db: Engine, settings: Settings, waker: CeleryWaker
) -> None:
    assert sign_in(client).status_code == 303  # type: ignore[attr-defined]
    again = restarted(db, settings, waker)
    again.cookies.set(COOKIE, client.cookies[COOKIE], path="/console")
    assert signed_in(again)


def test_sign_out_everywhere_ends_every_session_of_that_operator_only(
    client: TestClient, db: Engine
) -> None:
    with transaction(db) as session:
        add_operator(session, "grace", PASSWORD, now=utcnow())
    laptop, phone, grace = client, another(client), another(client)
    for browser in (laptop, phone):
        assert sign_in(browser).status_code == 303  # type: ignore[attr-defined]
    assert sign_in(grace, name="grace").status_code == 303  # type: ignore[attr-defined]
    inbox = laptop.get("/console/inbox").text
    assert "Sign out everywhere" in inbox
    ended = post(laptop, "/console/sign-out-everywhere", "/console/inbox")
    assert ended.status_code == 303 and ended.headers["location"] == "/console/sign-in"  # type: ignore[attr-defined]
    assert "Signed out everywhere (2 sessions)" in laptop.get("/console/sign-in").text
    assert not signed_in(laptop) and not signed_in(phone)
    assert signed_in(grace)


def test_a_new_password_or_removal_ends_every_session_at_once(
    client: TestClient, db: Engine
) -> None:
    phone = another(client)
    for browser in (client, phone):
        assert sign_in(browser).status_code == 303  # type: ignore[attr-defined]
    with transaction(db) as session:
        set_password(session, "ada", "another long password", now=utcnow())
    assert not signed_in(client) and not signed_in(phone)
    assert sign_in(client, password="another long password").status_code == 303  # type: ignore[attr-defined]
    with transaction(db) as session:
        remove_operator(session, "ada")
        assert session.scalar(select(func.count()).select_from(OperatorSession)) == 0
    assert not signed_in(client)


@pytest.fixture
def short_sessions(db: Engine, settings: Settings, waker: CeleryWaker) -> Iterator[TestClient]:
    with transaction(db) as session:
        add_operator(session, "ada", PASSWORD, now=utcnow())
    brief = settings.model_copy(update={"console_session_hours": 1 / 3600})  # one second
    with TestClient(
        create_app(brief, db, waker), base_url="http://dormouse.test", raise_server_exceptions=False
    ) as c:
        yield c


def test_a_session_expires_and_expired_ones_are_pruned_at_the_next_sign_in(
    short_sessions: TestClient, db: Engine
) -> None:
    assert sign_in(short_sessions).status_code == 303  # type: ignore[attr-defined]
    assert signed_in(short_sessions)
    time.sleep(1.2)
    assert not signed_in(short_sessions)
    assert sign_in(another(short_sessions)).status_code == 303  # type: ignore[attr-defined]
    with session_factory(db)() as session:
        assert session.scalar(select(func.count()).select_from(OperatorSession)) == 1


def test_the_cookie_carries_a_random_id_the_database_only_its_hash(
    client: TestClient, db: Engine
) -> None:
    assert sign_in(client).status_code == 303  # type: ignore[attr-defined]
    payload = client.cookies[COOKIE].split(".")[0]
    carried = json.loads(base64.b64decode(payload + "=" * (-len(payload) % 4)))
    assert set(carried) == {"sid"} and len(carried["sid"]) >= 43  # 256 bits, no name in it
    with session_factory(db)() as session:
        [stored] = session.scalars(select(OperatorSession.token_hash)).all()
    assert stored == hashlib.sha256(carried["sid"].encode()).hexdigest()


def test_signing_out_ends_an_open_event_stream_of_that_session(
    client: TestClient, db: Engine
) -> None:
    cid = ingest_sms(db, "hi").conversation_id
    assert sign_in(client).status_code == 303  # type: ignore[attr-defined]
    page = f"/console/conversations/{cid}"
    elsewhere = another(client)
    elsewhere.cookies.set(COOKIE, client.cookies[COOKIE], path="/console")
    started = time.monotonic()
    with client.stream("GET", f"{page}/events", headers={"Accept": "text/event-stream"}) as stream:
        assert stream.status_code == 200
        assert post(elsewhere, "/console/sign-out", page).status_code == 303  # type: ignore[attr-defined]
        ingest_sms(db, "are you there?")
        for _ in stream.iter_lines():  # ends: the session it belonged to has ended
            # Heartbeats every 15 s: a stream still open after 20 s outlived its session.
            assert time.monotonic() - started < 20, "the stream outlived its session"


def test_signing_in_again_replaces_the_session_it_came_with(client: TestClient, db: Engine) -> None:
    assert sign_in(client).status_code == 303  # type: ignore[attr-defined]
    first = client.cookies[COOKIE]
    assert sign_in(client).status_code == 303  # type: ignore[attr-defined]
    with session_factory(db)() as session:
        assert session.scalar(select(func.count()).select_from(OperatorSession)) == 1
    old = another(client)
    old.cookies.set(COOKIE, first, path="/console")
    assert not signed_in(old) and signed_in(client)
