"""The console's sign-in limits: per operator name from any address, per address over any
names, counted before the password is checked (so concurrent guesses cannot slip past), and
an address a client cannot pick with X-Forwarded-For unless it comes from TRUSTED_PROXIES."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import Engine

from conversations.db import transaction
from conversations.operators import set_password
from conversations.settings import Settings
from conversations.sign_in_limits import ADDRESS_LIMIT, NAME_LIMIT
from conversations.types import utcnow
from tests import test_console
from tests.conftest import Backend
from tests.e2e.stack import Stack, wait_until
from tests.test_console import PASSWORD, sign_in

client = test_console.client


def browser_at(client: TestClient, address: str) -> TestClient:
    return TestClient(
        client.app,
        base_url="http://dormouse.test",
        raise_server_exceptions=False,
        client=(address, 50000),
    )


def test_failures_on_one_name_are_limited_whatever_address_they_come_from(
    client: TestClient,
) -> None:
    for n in range(NAME_LIMIT):
        assert sign_in(browser_at(client, f"203.0.113.{n}"), password="guess").status_code == 401  # type: ignore[attr-defined]
    limited = sign_in(browser_at(client, "198.51.100.7"))  # the right password, elsewhere
    assert limited.status_code == 429  # type: ignore[attr-defined]
    assert "Too many failed sign-ins" in limited.text  # type: ignore[attr-defined]


def test_one_address_trying_many_names_is_limited(client: TestClient) -> None:
    for n in range(ADDRESS_LIMIT):
        assert sign_in(client, name=f"guess{n}").status_code == 401  # type: ignore[attr-defined]
    assert sign_in(client).status_code == 429  # type: ignore[attr-defined]
    assert sign_in(browser_at(client, "198.51.100.8")).status_code == 303  # type: ignore[attr-defined]


def test_thirty_wrong_passwords_at_once_check_no_more_than_the_limit(
    client: TestClient,
) -> None:
    def guess(n: int) -> int:
        return sign_in(browser_at(client, f"203.0.113.{n}"), password=f"guess {n}").status_code  # type: ignore[attr-defined]

    with ThreadPoolExecutor(30) as pool:
        answers = list(pool.map(guess, range(30)))
    assert answers.count(401) == NAME_LIMIT  # each 401 is one password checked
    assert answers.count(429) == 30 - NAME_LIMIT


def test_a_right_password_after_a_few_failures_signs_in_and_starts_the_count_afresh(
    client: TestClient,
) -> None:
    for _ in range(NAME_LIMIT - 1):
        assert sign_in(client, password="guess").status_code == 401  # type: ignore[attr-defined]
    assert sign_in(client, password=PASSWORD).status_code == 303  # type: ignore[attr-defined]
    for _ in range(NAME_LIMIT):
        assert sign_in(client, password="guess").status_code == 401  # type: ignore[attr-defined]


def test_a_new_password_lets_a_locked_out_operator_straight_back_in(
    client: TestClient, db: Engine
) -> None:
    for n in range(NAME_LIMIT):
        assert sign_in(browser_at(client, f"203.0.113.{n}"), password="guess").status_code == 401  # type: ignore[attr-defined]
    assert sign_in(client).status_code == 429  # type: ignore[attr-defined]
    with transaction(db) as session:
        set_password(session, "ada", "a fresh long password", now=utcnow())
    assert sign_in(client, password="a fresh long password").status_code == 303  # type: ignore[attr-defined]


def test_trusted_proxies_takes_addresses_and_cidrs_only() -> None:
    assert Settings(trusted_proxies="10.0.0.5, 192.168.0.0/24,::1").trusted_proxy_list == [
        "10.0.0.5",
        "192.168.0.0/24",
        "::1",
    ]
    assert Settings().trusted_proxy_list == []
    with pytest.raises(ValidationError, match="TRUSTED_PROXIES"):
        Settings(trusted_proxies="proxy.example.com")


@pytest.fixture
def api(migrated: Backend, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """``dormouse api`` alone, as a real uvicorn process, with the given TRUSTED_PROXIES."""
    stack = Stack(migrated, tmp_path, "http://127.0.0.1:9", TRUSTED_PROXIES=request.param)
    stack.spawn("api", "api", "--port", str(stack.port))
    try:
        wait_until(stack._healthy, 30, "the API to answer /healthz")
        yield stack
    finally:
        stack.stop()


def attempt_from(stack: Stack, forwarded_for: str, name: str) -> int:
    with httpx.Client(base_url=stack.base) as http:
        form = http.get("/console/sign-in").text
        token = re.search(r'name="csrf" value="([^"]+)"', form)
        assert token
        return http.post(
            "/console/sign-in",
            data={"csrf": token.group(1), "name": name, "password": "a guess"},
            headers={"X-Forwarded-For": forwarded_for},
        ).status_code


@pytest.mark.parametrize("api", [""], indirect=True)
def test_x_forwarded_for_from_an_untrusted_peer_does_not_move_the_address_counted(
    db: object, api: Stack
) -> None:
    answers = [attempt_from(api, f"203.0.113.{n}", f"guess{n}") for n in range(ADDRESS_LIMIT + 1)]
    assert answers[:-1] == [401] * ADDRESS_LIMIT and answers[-1] == 429


@pytest.mark.parametrize("api", ["127.0.0.1"], indirect=True)
def test_x_forwarded_for_from_a_trusted_proxy_names_the_client(db: object, api: Stack) -> None:
    answers = [attempt_from(api, f"203.0.113.{n}", f"guess{n}") for n in range(ADDRESS_LIMIT + 1)]
    assert answers == [401] * (ADDRESS_LIMIT + 1)
