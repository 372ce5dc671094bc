"""Fixtures on real services: PostgreSQL + Redis (default), or SQLite + the embedded broker.

``DORMOUSE_TEST_BACKEND=postgres|sqlite`` picks the pair; ``make test`` runs both. A missing
service stops the run with an error naming it: a test never skips because of one.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis
from click.testing import CliRunner, Result
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from cli.embedded import EmbeddedBroker
from conversations.broker import ping_broker
from conversations.data_dir import make_private
from conversations.db import dispose_engines, make_engine
from conversations.migrate import migrate
from conversations.models import Base
from conversations.settings import Settings, get_settings
from conversations.wakeup import CeleryWaker
from tests.fakes.model_api import FakeModel
from tests.fakes.smtp_server import FakeSmtp
from tests.fakes.twilio_api import FakeTwilio

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

BACKEND = os.environ.get("DORMOUSE_TEST_BACKEND", "postgres")
POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
# Its own name lets two runs (two checkouts, a helper beside you) share one PostgreSQL.
TEST_DATABASE = os.environ.get("DORMOUSE_TEST_DATABASE", "dormouse_test")

ACCOUNT_SID = "AC" + "1" * 32
AUTH_TOKEN = "test-auth-token-" + "x" * 16
FROM_NUMBER = "+15550006666"


@dataclass(frozen=True)
class Backend:
    name: str
    database_url: str
    broker_url: str
    data_dir: Path


def pytest_sessionstart(session: pytest.Session) -> None:
    if BACKEND not in ("postgres", "sqlite"):
        pytest.exit(f"DORMOUSE_TEST_BACKEND={BACKEND!r}: use postgres or sqlite", returncode=2)
    if BACKEND == "postgres":
        try:
            with create_engine(POSTGRES_URL).connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:
            pytest.exit(f"PostgreSQL is required and not reachable at {POSTGRES_URL}: {exc}", 3)
        try:
            ping_broker(REDIS_URL)
        except Exception as exc:
            pytest.exit(f"Redis is required and not reachable at {REDIS_URL}: {exc}", 3)


def _fresh_postgres_database() -> str:
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {TEST_DATABASE} WITH (FORCE)"))
        conn.execute(text(f"CREATE DATABASE {TEST_DATABASE}"))
    admin.dispose()
    return make_url(POSTGRES_URL).set(database=TEST_DATABASE).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    data_dir = tmp_path_factory.mktemp("var")
    if BACKEND == "postgres":
        client = redis.Redis.from_url(REDIS_URL)
        client.flushdb()
        client.close()
        yield Backend("postgres", _fresh_postgres_database(), REDIS_URL, data_dir)
        return
    broker = EmbeddedBroker(data_dir / "redis.sock")
    broker.start()
    try:
        yield Backend("sqlite", f"sqlite:///{data_dir / 'dormouse.db'}", broker.url, data_dir)
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def migrated(backend: Backend) -> Backend:
    migrate(Settings(data_dir=backend.data_dir, database_url=backend.database_url))
    # Owner-only, as `dormouse migrate` leaves it (its umask): no command then warns about it.
    make_private(backend.data_dir)
    return backend


@pytest.fixture(scope="session")
def engine(migrated: Backend) -> Iterator[Engine]:
    eng = make_engine(migrated.database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def db(engine: Engine, migrated: Backend) -> Engine:
    """An empty database and an empty broker for one test."""
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
    broker_client(migrated.broker_url).flushdb()
    return engine


def broker_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url.replace("redis+socket://", "unix://", 1))


def queued(url: str, queue: str) -> list[tuple[str, list[object]]]:
    """The (task name, args) of the wake-ups waiting in a broker queue, oldest first."""
    out = []
    for raw in reversed(broker_client(url).lrange(queue, 0, -1)):
        message = json.loads(raw)
        args = json.loads(__import__("base64").b64decode(message["body"]))[0]
        out.append((message["headers"]["task"], args))
    return out


@pytest.fixture
def dormouse_cli(
    db: Engine, migrated: Backend, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Result]]:
    """Runs ``dormouse ARGS`` in this process (not a terminal) on the test database; returns
    click's result: ``output``, ``exit_code``."""
    from cli.main import cli

    monkeypatch.setenv("DATABASE_URL", migrated.database_url)
    monkeypatch.setenv("DATA_DIR", str(migrated.data_dir))
    # The test's broker: a command that commits events wakes their webhook deliveries.
    monkeypatch.setenv("BROKER_URL", migrated.broker_url)
    monkeypatch.setenv("WEBHOOK_ALLOW_PRIVATE", "true")  # the receivers are on 127.0.0.1
    for name in ("DORMOUSE_AGENTS", "MODEL", "MODEL_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()

    def run(*args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(cli, list(args), input=input)

    yield run
    dispose_engines()
    get_settings.cache_clear()


@pytest.fixture
def fake_twilio() -> Iterator[FakeTwilio]:
    fake = FakeTwilio(ACCOUNT_SID, AUTH_TOKEN).start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_smtp() -> Iterator[FakeSmtp]:
    server = FakeSmtp().start()
    yield server
    server.stop()


@pytest.fixture
def fake_model() -> Iterator[FakeModel]:
    fake = FakeModel().start()
    yield fake
    fake.stop()


@pytest.fixture
def settings(migrated: Backend, fake_twilio: FakeTwilio) -> Settings:
    """Settings of an in-process Dormouse wired to the real services and the fake Twilio."""
    return Settings(
        data_dir=migrated.data_dir,
        database_url=migrated.database_url,
        broker_url=migrated.broker_url,
        public_url="http://dormouse.test",
        dormouse_api_keys=f"tests:{API_KEY}",
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=AUTH_TOKEN,
        twilio_from_number=FROM_NUMBER,
        twilio_api_url=fake_twilio.url,
        twilio_http_timeout=1.0,
        delivery_backoff_base=0.01,
        delivery_reconcile_after=0.01,
        lease_seconds=30,
        turn_time_limit=20,
        # The mail tests' messages carry no receiving service's verdicts; the tests of
        # EMAIL_REQUIRE_AUTH (tests/test_held_mail.py) turn it on.
        email_require_auth="off",
        # The receivers are local servers on 127.0.0.1; outside embedded mode (a DATABASE_URL,
        # as here) private targets are refused unless allowed.
        webhook_allow_private=True,
    )


SUPPORT = "Acme Support <support@acme.test>"


@pytest.fixture
def mail_settings(settings: Settings, fake_smtp: FakeSmtp) -> Settings:
    """``settings`` with SMTP to the fake server and the email webhook's secret set."""
    return settings.model_copy(
        update={
            "smtp_url": fake_smtp.url,
            "smtp_timeout": 1.0,
            "email_from": SUPPORT,
            "email_services": "sales@acme.test=sales",
            "email_inbound_secret": "inbound-secret-for-tests",
        }
    )


@pytest.fixture
def waker(settings: Settings) -> CeleryWaker:
    return CeleryWaker(settings=settings)


@pytest.fixture
def api_client(db: Engine, settings: Settings, waker: CeleryWaker) -> Iterator[TestClient]:
    """The API in this process on the test database, with the tests' API key."""
    from fastapi.testclient import TestClient

    from api.app import create_app

    with TestClient(create_app(settings, db, waker), raise_server_exceptions=False) as c:
        c.headers["Authorization"] = f"Bearer {API_KEY}"
        yield c


API_KEY = "test-key-" + secrets.token_hex(8)
