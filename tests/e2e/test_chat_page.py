"""The chat page in a real browser (the distribution's Chromium, headless) against real API
and worker processes: connect from the URL `make up` prints, chat, reload, chat on, end.

Screenshots land in the test's tmp_path and in ``test-artifacts/`` (git-ignored)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.conftest import API_KEY
from tests.e2e.stack import Stack

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:  # a failure, never a skip: CI must not pass without the page being tried
        pytest.fail(
            f"the chat page test needs {' and '.join(missing)}: "
            "apt-get install chromium chromium-driver",
            pytrace=False,
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)  # --no-sandbox: CI runs as root
    options.add_argument("--window-size=1000,760")
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def transcript(driver: WebDriver) -> list[tuple[str, str]]:
    """(label, text) of each message shown, as a reader sees them."""
    items = driver.find_elements(By.CSS_SELECTOR, "#transcript li.message:not(.pending)")
    return [
        (li.find_element(By.CLASS_NAME, "who").text, li.find_element(By.CLASS_NAME, "text").text)
        for li in items
    ]


def until(driver: WebDriver, what: str, check: Callable[[WebDriver], object]) -> None:
    try:
        WebDriverWait(driver, 30).until(check)
    except Exception:
        shown = driver.find_element(By.TAG_NAME, "body").text
        raise AssertionError(f"timed out waiting for {what}; the page shows:\n{shown}") from None


def send(driver: WebDriver, text: str) -> None:
    box = driver.find_element(By.ID, "text")
    box.send_keys(text, Keys.ENTER)  # Enter sends


def screenshot(driver: WebDriver, tmp_path: Path, name: str) -> Path:
    shot = tmp_path / f"{name}.png"
    assert driver.save_screenshot(str(shot))
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(shot, ARTIFACTS / shot.name)
    return shot


def test_a_chat_in_the_browser_survives_a_reload(
    make_stack: Callable[..., Stack], browser: WebDriver, tmp_path: Path
) -> None:
    stack = make_stack().start(workers=1)
    browser.get(f"{stack.base}/chat#key={API_KEY}")
    until(browser, "the services", lambda d: d.find_elements(By.CSS_SELECTOR, "#service option"))
    assert "key=" not in browser.current_url, "the key must leave the address bar"
    stored = browser.execute_script(
        "return [sessionStorage.getItem('dormouse.key'), localStorage.getItem('dormouse.key')]"
    )
    assert stored == [API_KEY, None], "the key lives with the tab, not in the profile"
    shown = [o.text for o in Select(browser.find_element(By.ID, "service")).options]
    assert "default" in shown and not any("http" in text for text in shown)
    Select(browser.find_element(By.ID, "service")).select_by_value("default")

    send(browser, "hello from the browser")
    until(browser, "the agent's reply", lambda d: len(transcript(d)) == 2)
    first = transcript(browser)
    assert first[0] == ("You", "hello from the browser")
    assert first[1][0] == "Agent" and '"hello from the browser"' in first[1][1]
    isolated = browser.execute_script(
        "return [...document.querySelectorAll('#transcript .text')]"
        ".map(e => [getComputedStyle(e).unicodeBidi, e.dir])"
    )
    assert isolated == [["isolate", "auto"]] * 2, "bidi controls in a message stay inside it"

    browser.refresh()
    until(browser, "the transcript again", lambda d: transcript(d) == first)
    assert not browser.find_element(By.ID, "service").is_enabled()  # the chat is this service's

    send(browser, "where is my order?")
    until(browser, "the second reply", lambda d: len(transcript(d)) == 4)
    assert transcript(browser)[2] == ("You", "where is my order?")
    assert "2 messages from you" in transcript(browser)[3][1]
    until(
        browser,
        "the typing indicator to go",
        lambda d: not d.find_element(By.ID, "typing").is_displayed(),
    )
    screenshot(browser, tmp_path, "chat-page")
    so_far = transcript(browser)

    browser.set_window_size(390, 844)  # a phone
    screenshot(browser, tmp_path, "chat-page-phone")

    # A browser that lost the conversation's id: starting again meets the open chat (409)
    # and carries on in it, history first.
    browser.execute_script("localStorage.removeItem('dormouse.chat')")
    browser.refresh()
    until(browser, "a fresh page", lambda d: d.find_elements(By.CSS_SELECTOR, "#service option"))
    assert transcript(browser) == []
    send(browser, "still there?")
    # Whichever stream (the replayed history or the new message's) is read first, the
    # transcript settles in the conversation's order: wait for all six, then read them.
    until(browser, "the resumed chat", lambda d: len(transcript(d)) == 6)
    until(
        browser,
        "nothing left pending",
        lambda d: not d.find_elements(By.CSS_SELECTOR, "li.pending"),
    )
    resumed = transcript(browser)
    assert resumed[:4] == so_far
    assert resumed[4] == ("You", "still there?") and "3 messages" in resumed[5][1]

    # The page keeps the conversation's events open: a person's reply shows up unasked.
    chat = browser.execute_script("return JSON.parse(localStorage.getItem('dormouse.chat'))")
    for path, body in (("handoff", {"reason": "e2e"}), ("messages", {"text": "Ada here."})):
        answer = httpx.post(
            f"{stack.base}/v1/conversations/{chat['id']}/{path}", json=body, headers=AUTH
        )
        assert answer.is_success, answer.text
    until(browser, "the operator's reply", lambda d: ("Operator", "Ada here.") in transcript(d))
    assert "Handed to a person" in browser.find_element(By.ID, "transcript").text
    handback = httpx.post(f"{stack.base}/v1/conversations/{chat['id']}/handback", headers=AUTH)
    assert handback.is_success, handback.text
    until(browser, "the agent back", lambda d: "The agent is back." in d.page_source)

    send(browser, "ok, bye!")
    until(browser, "the end", lambda d: d.find_element(By.ID, "ended").is_displayed())
    assert "This conversation has ended" in browser.find_element(By.ID, "ended").text
    assert not browser.find_element(By.ID, "composer").is_displayed()
    screenshot(browser, tmp_path, "chat-page-ended")
    browser.find_element(By.ID, "new-conversation").click()
    until(browser, "an empty transcript", lambda d: transcript(d) == [])
    assert browser.find_element(By.ID, "service").is_enabled()

    # Without a key the page asks for one, and says so when it is refused.
    browser.find_element(By.ID, "forget").click()
    key = browser.find_element(By.ID, "key")
    assert key.get_attribute("type") == "password"
    key.send_keys("not-the-key", Keys.ENTER)
    until(browser, "the refusal", lambda d: "refused" in d.find_element(By.ID, "key-problem").text)
    screenshot(browser, tmp_path, "chat-page-key")
    browser.find_element(By.ID, "key").send_keys(API_KEY, Keys.ENTER)
    until(browser, "the chat again", lambda d: d.find_element(By.ID, "composer").is_displayed())

    # A key pasted as #key=… into the tab that is already open is taken too.
    browser.find_element(By.ID, "forget").click()
    until(browser, "the key form", lambda d: d.find_element(By.ID, "key").is_displayed())
    browser.execute_script("location.hash = arguments[0]", f"#key={API_KEY}")
    until(
        browser,
        "the chat from the pasted key",
        lambda d: d.find_element(By.ID, "composer").is_displayed(),
    )
    assert "key=" not in browser.current_url
