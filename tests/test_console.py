"""The operator console over HTTP on the real services: sign-in, its refusals, and every
page's actions recorded under the operator's name. (tests/e2e/test_console_page.py drives
the same pages in a browser.)"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, update

from api.app import create_app
from conversations.db import session_factory, transaction
from conversations.models import (
    Conversation,
    Customer,
    Identity,
    OperatorAction,
    OutboxRow,
    TimeoutPolicyChange,
)
from conversations.operators import add_operator
from conversations.settings import Settings
from conversations.sign_in_limits import NAME_LIMIT
from conversations.types import utcnow
from conversations.wakeup import CeleryWaker
from tests.factories import ingest_sms

PASSWORD = "correct horse battery"


@pytest.fixture
def client(db: Engine, settings: Settings, waker: CeleryWaker) -> Iterator[TestClient]:
    with transaction(db) as session:
        add_operator(session, "ada", PASSWORD, now=utcnow())
    app = create_app(settings, db, waker)
    with TestClient(app, base_url="http://dormouse.test", raise_server_exceptions=False) as c:
        yield c


def csrf(client: TestClient, path: str = "/console/sign-in") -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', client.get(path).text)
    assert found, f"no form token on {path}"
    return found.group(1)


def sign_in(client: TestClient, name: str = "ada", password: str = PASSWORD) -> object:
    return client.post(
        "/console/sign-in",
        data={"csrf": csrf(client), "name": name, "password": password, "next": "/console/inbox"},
        follow_redirects=False,
    )


def post(client: TestClient, path: str, page: str, **data: str) -> object:
    return client.post(path, data={"csrf": csrf(client, page), **data}, follow_redirects=False)


def test_sign_in_sets_a_signed_http_only_lax_cookie_and_lands_in_the_inbox(
    client: TestClient,
) -> None:
    page = client.get("/console/sign-in")
    assert page.status_code == 200
    assert "form-action 'self'" in page.headers["content-security-policy"]
    answer = sign_in(client)
    assert answer.status_code == 303 and answer.headers["location"] == "/console/inbox"
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/console" in cookie
    inbox = client.get("/console/inbox")
    assert inbox.status_code == 200 and 'id="signed-in-as"' in inbox.text and ">ada<" in inbox.text


def test_a_wrong_password_is_refused_and_says_so(client: TestClient) -> None:
    answer = sign_in(client, password="not the password")
    assert answer.status_code == 401
    assert "Wrong name or password." in answer.text
    assert client.get("/console/inbox", follow_redirects=False).status_code == 303


def test_an_unknown_name_gets_the_same_answer(client: TestClient) -> None:
    answer = sign_in(client, name="mallory")
    assert answer.status_code == 401 and "Wrong name or password." in answer.text


def test_a_post_without_the_form_token_is_refused(client: TestClient) -> None:
    no_token = client.post(
        "/console/sign-in", data={"name": "ada", "password": PASSWORD}, follow_redirects=False
    )
    assert no_token.status_code == 403 and "This form has expired" in no_token.text
    assert sign_in(client).status_code == 303
    cid = ingest_sms(client.app.state.dormouse.engine, "hi").conversation_id  # type: ignore[attr-defined]
    forged = client.post(
        f"/console/conversations/{cid}/take-over", data={"csrf": "guessed"}, follow_redirects=False
    )
    assert forged.status_code == 403
    with session_factory(client.app.state.dormouse.engine)() as session:  # type: ignore[attr-defined]
        assert session.get_one(Conversation, cid).status != "handoff"


def test_a_signed_out_request_is_sent_to_sign_in_or_refused(client: TestClient, db: Engine) -> None:
    cid = ingest_sms(db, "hi").conversation_id
    page = client.get(f"/console/conversations/{cid}", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == f"/console/sign-in?next=/console/conversations/{cid}"
    token = csrf(client)  # a session with a token, but nobody signed in
    action = client.post(
        f"/console/conversations/{cid}/take-over", data={"csrf": token}, follow_redirects=False
    )
    assert action.status_code == 401
    stream = client.get(
        f"/console/conversations/{cid}/events", headers={"Accept": "text/event-stream"}
    )
    assert stream.status_code == 401


def test_sign_in_attempts_are_rate_limited_per_name(client: TestClient) -> None:
    for _ in range(NAME_LIMIT):
        assert sign_in(client, password="guess").status_code == 401
    limited = sign_in(client)  # even the right password, now
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 15 * 60 + 1
    assert "Too many failed sign-ins" in limited.text


def test_the_inbox_puts_handoff_first_counts_each_status_and_finds_by_address(
    client: TestClient, db: Engine
) -> None:
    waiting = ingest_sms(db, "I need a person", sender="+14155550101").conversation_id
    ingest_sms(db, "hello", sender="+14155550102")
    newest = ingest_sms(db, "hi again", sender="+14155550103").conversation_id
    with transaction(db) as session:
        session.execute(
            update(Conversation).where(Conversation.id == waiting).values(status="handoff")
        )
    sign_in(client)
    inbox = client.get("/console/inbox").text
    ids = re.findall(r'data-id="([0-9a-f-]{36})"', inbox)
    assert ids[0] == str(waiting) and ids[1] == str(newest) and len(ids) == 3
    assert re.search(r'data-view="handoff">1<', inbox)
    assert re.search(r'data-view="open">3<', inbox)
    found = client.get("/console/inbox", params={"q": "550102"}).text
    assert len(re.findall(r'data-id="', found)) == 1
    handoff_only = client.get("/console/inbox", params={"view": "handoff"}).text
    assert re.findall(r'data-id="([0-9a-f-]{36})"', handoff_only) == [str(waiting)]


def test_take_over_reply_hand_back_finish_each_recorded_under_the_operator(
    client: TestClient, db: Engine
) -> None:
    cid = ingest_sms(db, "where is my order?").conversation_id
    sign_in(client)
    page = f"/console/conversations/{cid}"
    assert "where is my order?" in client.get(page).text
    assert post(client, f"{page}/take-over", page).status_code == 303
    assert "You have taken over" in client.get(page).text
    assert post(client, f"{page}/reply", page, text="Ada here, looking now.").status_code == 303
    shown = client.get(page).text
    assert "Operator · ada" in shown and "Ada here, looking now." in shown
    assert post(client, f"{page}/timeout", page, inactivity="2h").status_code == 303
    assert post(client, f"{page}/hand-back", page).status_code == 303
    assert post(client, f"{page}/finish", page).status_code == 303
    refused = post(client, f"{page}/finish", page)
    assert "already finished" in client.get(refused.headers["location"]).text  # type: ignore[attr-defined]
    with session_factory(db)() as session:
        conv = session.get_one(Conversation, cid)
        assert conv.status == "finished" and conv.finish_reason == "operator"
        assert conv.timeout_override_seconds == 7200
        rows = session.scalars(select(OutboxRow).where(OutboxRow.conversation_id == cid)).all()
        assert [r.body for r in rows] == ["Ada here, looking now."]
        done = session.scalars(
            select(OperatorAction).where(OperatorAction.conversation_id == cid)
        ).all()
        assert [(a.actor, a.action) for a in done] == [
            ("operator:ada", "take_over"),
            ("operator:ada", "reply"),
            ("operator:ada", "set_timeout"),
            ("operator:ada", "hand_back"),
            ("operator:ada", "finish"),
        ]


def test_a_timeout_is_reviewed_with_its_effect_then_saved_into_the_history(
    client: TestClient, db: Engine
) -> None:
    for n in range(3):
        ingest_sms(db, "hi", sender=f"+1415555011{n}")
    sign_in(client)
    policy = {
        "service": "",
        "channel": "sms",
        "inactivity": "2h",
        "nudge_before": "30m",
        "nudge_message": "Still there?",
        "closing_message": "Closing this chat.",
    }
    review = post(client, "/console/timeouts", "/console/timeouts", **policy)
    assert review.status_code == 200  # type: ignore[attr-defined]
    assert re.search(r"Applies to <strong>3</strong> open conversations", review.text)  # type: ignore[attr-defined]
    assert "Nudges and closes no open conversation right away." in review.text  # type: ignore[attr-defined]
    with session_factory(db)() as session:
        assert session.scalars(select(TimeoutPolicyChange)).all() == []
    saved = post(client, "/console/timeouts", "/console/timeouts", confirm="yes", **policy)
    assert saved.status_code == 303  # type: ignore[attr-defined]
    page = client.get("/console/timeouts").text
    assert "operator:ada" in page and "Still there?" in page and "Closing this chat." in page
    with session_factory(db)() as session:
        [change] = session.scalars(select(TimeoutPolicyChange)).all()
        assert change.actor == "operator:ada" and change.new
        assert change.new["inactivity"] == "2h" and change.new["nudge_message"] == "Still there?"
    bad = post(client, "/console/timeouts", "/console/timeouts", inactivity="soon")
    assert bad.status_code == 422 and "not a duration" in bad.text  # type: ignore[attr-defined]
    removed = post(
        client, "/console/timeouts/remove", "/console/timeouts", service="", channel="sms"
    )
    assert removed.status_code == 303  # type: ignore[attr-defined]
    with session_factory(db)() as session:
        assert [c.actor for c in session.scalars(select(TimeoutPolicyChange))] == [
            "operator:ada",
            "operator:ada",
        ]


def test_find_link_and_erase_a_customer(client: TestClient, db: Engine) -> None:
    cid = ingest_sms(db, "hello", sender="+14155550120").conversation_id
    with session_factory(db)() as session:
        customer = session.get_one(Conversation, cid).customer_id
    sign_in(client)
    found = client.get("/console/customers", params={"q": "5550120"}).text
    assert f"/console/customers/{customer}" in found
    page = f"/console/customers/{customer}"
    linked = post(client, f"{page}/identities", page, kind="email", address="Ada@Example.com")
    assert "Linked ada@example.com" in client.get(linked.headers["location"]).text  # type: ignore[attr-defined]
    review = client.get(f"{page}/erase").text
    assert "+14155550120" in review and "ada@example.com" in review
    assert "1 conversation with 1 message" in review
    erased = post(client, f"{page}/erase", f"{page}/erase", confirm="erase")
    assert erased.status_code == 303  # type: ignore[attr-defined]
    with session_factory(db)() as session:
        assert session.get(Customer, customer) is None
        assert session.scalars(select(Identity)).all() == []
        actions = session.scalars(select(OperatorAction).order_by(OperatorAction.id)).all()
        assert [(a.action, a.customer_id) for a in actions] == [
            ("link_address", customer),
            ("erase_customer", customer),
        ]
    assert client.get(page).status_code == 404


def test_an_unknown_conversation_is_a_404_page(client: TestClient) -> None:
    sign_in(client)
    answer = client.get(f"/console/conversations/{uuid.uuid4()}")
    assert answer.status_code == 404 and "No such conversation" in answer.text


def test_the_console_is_not_in_the_api_schema_and_docs_load_nothing_from_elsewhere(
    client: TestClient,
) -> None:
    schema = client.get("/openapi.json").json()
    assert not [p for p in schema["paths"] if p.startswith("/console")]
    assert schema["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    assert schema["paths"]["/v1/conversations"]["get"]["security"] == [{"ApiKey": []}]
    docs = client.get("/docs").text
    assets = re.findall(r"""(?:href|src)=["']([^"']+)["']""", docs) + re.findall(
        r"url: ?'([^']+)'", docs
    )
    assert assets and all(a.startswith("/") for a in assets), assets
    assert "cdn" not in docs.lower()
    for asset in assets:
        assert client.get(asset).status_code == 200, asset


def test_the_console_loads_nothing_from_another_origin() -> None:
    from api.console.render import HERE

    for path in [*HERE.glob("templates/*.html"), *HERE.glob("static/*")]:
        text = path.read_text()
        assert not re.search(r"https?://|@import|url\(|//cdn", text), f"{path.name} loads elsewhere"


def test_bidi_controls_in_customer_text_are_isolated(client: TestClient, db: Engine) -> None:
    # U+202E (right-to-left override) would reverse everything after it on the line.
    tricky = "refund \u202eeciovni\u202c please"
    cid = ingest_sms(db, tricky, sender="+14155550130").conversation_id
    sign_in(client)
    page = client.get(f"/console/conversations/{cid}").text
    assert f"<bdi>{tricky}</bdi>" in page
    assert (
        "bdi, .bubble .text { unicode-bidi: isolate; }"
        in client.get("/console/assets/console.css").text
    )
