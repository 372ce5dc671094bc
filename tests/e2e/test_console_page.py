"""The operator console in a real browser (the distribution's Chromium, headless) against
real API, worker and beat processes: sign in, find the conversation waiting for a human at
the top of the inbox, reply (the reply reaches the local Twilio), hand back, set a 2 h SMS
timeout with a nudge and see it in the history, erase a customer.

Screenshots of each page land in ``test-artifacts/console-*.png`` (git-ignored)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select
from sqlalchemy import Engine, select

from conversations.db import session_factory, transaction
from conversations.models import Customer, OperatorAction
from conversations.operators import add_operator
from conversations.types import utcnow
from tests.e2e.stack import Stack, wait_until
from tests.e2e.test_chat_page import browser, screenshot, until  # noqa: F401 - the fixture
from tests.fakes.twilio_api import FakeTwilio

PASSWORD = "a long console password"
WAITING = "+14155550177"
CHATTY = "+14155550178"


def text_of(driver: WebDriver, element_id: str) -> str:
    """An element's text read in one step: the live refresh replaces elements, and a found
    element gone stale before its text was read would fail the wait instead of retrying."""
    shown = driver.execute_script(
        "const e = document.getElementById(arguments[0]); return e ? e.innerText : '';",
        element_id,
    )
    return str(shown)


def rows(driver: WebDriver) -> list[str]:
    return [
        li.get_attribute("data-id") or ""
        for li in driver.find_elements(By.CSS_SELECTOR, "#conversations li.row")
    ]


def test_an_operator_works_a_handoff_in_the_console(
    make_stack: Callable[..., Stack],
    browser: WebDriver,  # noqa: F811
    fake_twilio: FakeTwilio,
    db: Engine,
    tmp_path: Path,
) -> None:
    stack = make_stack().start(workers=1)
    with transaction(db) as session:
        add_operator(session, "ada", PASSWORD, now=utcnow())

    # One customer asks for a person; another writes after, so is newer, yet comes second.
    assert stack.text("hello, I need a human please", WAITING).status_code == 200
    waiting = wait_until(
        lambda: [c for c in stack.conversations(WAITING) if c["status"] == "handoff"],
        what="the handoff",
    )[0]["id"]
    fake_twilio.wait_for(1, to=WAITING)
    assert stack.text("my name is Grace", CHATTY).status_code == 200
    fake_twilio.wait_for(1, to=CHATTY)

    # Signed out, the console sends the browser to sign in, and back.
    browser.set_window_size(1200, 860)
    # Times are the viewer's own, zone named: an operator in Tokyo reads Tokyo time.
    browser.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": "Asia/Tokyo"})
    browser.get(f"{stack.base}/console/inbox")
    until(browser, "the sign-in form", lambda d: d.find_elements(By.ID, "password"))
    screenshot(browser, tmp_path, "console-sign-in")
    browser.find_element(By.ID, "name").send_keys("ada")
    browser.find_element(By.ID, "password").send_keys("wrong password")
    browser.find_element(By.ID, "sign-in").click()
    until(browser, "the refusal", lambda d: d.find_elements(By.ID, "sign-in-error"))
    assert "Wrong name or password." in browser.find_element(By.ID, "sign-in-error").text
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.ID, "sign-in").click()
    until(browser, "the inbox", lambda d: len(rows(d)) == 2)
    assert rows(browser)[0] == waiting, "the conversation waiting for a human comes first"
    top = browser.find_element(By.CSS_SELECTOR, "#conversations li.row")
    assert "Waiting for a human" in top.text and WAITING in top.text
    screenshot(browser, tmp_path, "console-inbox")

    top.find_element(By.TAG_NAME, "a").click()
    until(browser, "the conversation", lambda d: d.find_elements(By.ID, "reply-text"))
    assert "hello, I need a human please" in browser.find_element(By.ID, "transcript").text
    box = browser.find_element(By.ID, "reply-text")
    box.send_keys("Hi, this is Ada from the team. Let me look into it.")
    browser.find_element(By.ID, "send-reply").click()
    until(browser, "the reply queued", lambda d: "Reply queued" in text_of(d, "flash"))
    sent = fake_twilio.wait_for(2, to=WAITING)
    assert sent[-1].body == "Hi, this is Ada from the team. Let me look into it."
    until(
        browser,
        "the reply in the transcript",
        lambda d: "Operator · ada" in text_of(d, "transcript"),
    )
    screenshot(browser, tmp_path, "console-conversation")
    shown = browser.find_element(By.CSS_SELECTOR, "#transcript time").text
    assert "GMT+9" in shown and "UTC" not in shown, shown
    browser.set_window_size(390, 844)  # a phone
    screenshot(browser, tmp_path, "console-conversation-phone")
    browser.set_window_size(1200, 860)

    browser.find_element(By.ID, "hand-back").click()
    until(browser, "the agent back", lambda d: d.find_elements(By.ID, "take-over"))
    assert "With the agent" in browser.find_element(By.CLASS_NAME, "conversation-head").text
    # The page follows the conversation's event stream: the customer's next message and the
    # agent's answer appear without a reload.
    usage = text_of(browser, "usage")
    assert stack.text("thanks, one more question", WAITING).status_code == 200
    until(
        browser,
        "the live update",
        lambda d: "Agent" in text_of(d, "transcript").partition("thanks, one more question")[2],
    )
    # The side panels follow too: the agent's turn shows in the usage without a reload.
    until(browser, "the usage to follow", lambda d: text_of(d, "usage") != usage)

    # A 2 h SMS timeout with a nudge: reviewed with its effect, saved, in the history.
    browser.get(f"{stack.base}/console/timeouts")
    Select(browser.find_element(By.ID, "policy-channel")).select_by_value("sms")
    browser.find_element(By.ID, "policy-inactivity").send_keys("2h")
    browser.find_element(By.ID, "policy-nudge-before").send_keys("30m")
    browser.find_element(By.ID, "policy-nudge-message").send_keys("Still there? Just reply.")
    browser.find_element(By.ID, "policy-closing-message").send_keys("Closing this chat, bye!")
    browser.find_element(By.ID, "review-policy").click()
    until(browser, "the review", lambda d: d.find_elements(By.ID, "effect"))
    assert "Applies to 2 open conversations" in browser.find_element(By.ID, "effect").text
    screenshot(browser, tmp_path, "console-timeout-review")
    browser.find_element(By.ID, "save-policy").click()
    until(browser, "the history", lambda d: d.find_elements(By.ID, "history"))
    history = browser.find_element(By.ID, "history").text
    assert "operator:ada" in history and "channel sms" in history
    assert "2h" in history and "Still there? Just reply." in history
    assert "channel sms" in browser.find_element(By.ID, "policies").text
    screenshot(browser, tmp_path, "console-timeouts")
    browser.set_window_size(390, 844)  # a phone: the policies read as cards, no sideways scroll
    assert browser.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth"
    )
    screenshot(browser, tmp_path, "console-timeouts-phone")
    browser.set_window_size(1200, 860)

    # Erase the customer who wrote second, after a page naming what goes.
    browser.get(f"{stack.base}/console/customers")
    browser.find_element(By.ID, "customer-q").send_keys(CHATTY[-7:])
    browser.find_element(By.ID, "find-customer").click()
    until(browser, "the customer", lambda d: d.find_elements(By.CSS_SELECTOR, "#customers a"))
    browser.find_element(By.CSS_SELECTOR, "#customers a").click()
    until(browser, "the customer page", lambda d: d.find_elements(By.ID, "identities"))
    assert CHATTY in browser.find_element(By.ID, "identities").text
    assert "Grace" in browser.page_source  # the name the agent remembered
    screenshot(browser, tmp_path, "console-customer")
    customer_id = uuid.UUID(browser.current_url.rstrip("/").split("/")[-1])
    browser.find_element(By.ID, "erase").click()
    until(browser, "the erase review", lambda d: d.find_elements(By.ID, "erase-list"))
    listed = browser.find_element(By.ID, "erase-list").text
    assert CHATTY in listed and "1 conversation with 2 messages" in listed
    screenshot(browser, tmp_path, "console-erase")
    browser.find_element(By.ID, "confirm-erase").click()
    until(browser, "the erasure", lambda d: "Erased customer" in text_of(d, "flash"))
    with session_factory(db)() as session:
        assert session.scalars(select(Customer).where(Customer.id == customer_id)).all() == []
        done = [
            (a.actor, a.action)
            for a in session.scalars(select(OperatorAction).order_by(OperatorAction.id))
        ]
    assert done == [
        ("operator:ada", "reply"),
        ("operator:ada", "hand_back"),
        ("operator:ada", "set_timeout_policy"),
        ("operator:ada", "erase_customer"),
    ]

    browser.get(f"{stack.base}/console/inbox")
    until(browser, "the inbox", lambda d: len(rows(d)) == 1)
    browser.set_window_size(390, 844)
    screenshot(browser, tmp_path, "console-inbox-phone")
    browser.set_window_size(1200, 860)
    browser.get(f"{stack.base}/docs")
    until(browser, "Swagger UI", lambda d: d.find_elements(By.CSS_SELECTOR, ".swagger-ui .info"))
    until(browser, "Authorize", lambda d: d.find_elements(By.CSS_SELECTOR, ".btn.authorize"))
    screenshot(browser, tmp_path, "console-api-docs")
