"""The API answers as its OpenAPI schema says, for any input (Schemathesis, bounded, seeded).

Every answer's status is documented for its route, every body matches the documented schema
(one error shape for every refusal), and no input is a 500. Run with and without the key: a
request without it is a 401 before anything else is read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as examples
from schemathesis import GenerationMode, checks
from sqlalchemy import Engine

from api.app import create_app
from conversations.settings import Settings
from conversations.wakeup import CeleryWaker
from tests.conftest import API_KEY
from tests.fakes.resolver import FakeResolver

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]
# Enough to reach every route's refusals, few enough that the suite stays quick; derandomized
# so a failure found once is found on every run.
BOUNDED = examples(
    max_examples=150,
    derandomize=True,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture
def api(db: Engine, settings: Settings, waker: CeleryWaker, monkeypatch: pytest.MonkeyPatch) -> Any:
    # Webhook URLs are resolved when saved: generated host names must not become DNS queries.
    FakeResolver.install(monkeypatch)
    # A live stream waits for a turn no worker runs here: a short wait ends it with an error
    # event instead of the two minutes a real client is given.
    quick = settings.model_copy(update={"live_reply_timeout": 0.3, "events_poll_seconds": 0.1})
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(quick, db, waker))


def fuzz(schema: Any, mode: GenerationMode, check: Callable[[Any], None]) -> list[str]:
    """What ``check`` refused on bounded examples of every operation in ``schema``: each
    distinct failure once, so one run lists every route that answers off its schema."""
    failures: dict[str, str] = {}

    @given(case=schema.as_strategy(generation_mode=mode))
    @BOUNDED
    def run(case: Any) -> None:
        try:
            check(case)
        except (Exception, BaseExceptionGroup) as exc:  # Schemathesis raises a group
            for failure in getattr(exc, "exceptions", [exc]):
                kind = getattr(failure, "title", type(failure).__name__)
                status = getattr(failure, "status_code", "")
                said = " ".join(str(failure).split())[:400]
                failures.setdefault(f"{case.method} {case.path}: {kind} {status}", said)

    run()
    return [f"{where}\n    {said}" for where, said in sorted(failures.items())]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_v1_answer_is_documented(api: Any, mode: GenerationMode) -> None:
    def authenticated(case: Any) -> None:
        case.call_and_validate(headers={"Authorization": f"Bearer {API_KEY}"}, checks=CHECKS)

    failures = fuzz(api.include(path_regex="^/v1/"), mode, authenticated)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_without_the_key_every_v1_route_answers_401(api: Any, mode: GenerationMode) -> None:
    def unauthenticated(case: Any) -> None:
        if case.headers:
            case.headers.pop("Authorization", None)
        response = case.call_and_validate(checks=CHECKS)
        assert response.status_code == 401, f"{case.method} {case.formatted_path}: {response.text}"

    failures = fuzz(api.include(path_regex="^/v1/"), mode, unauthenticated)
    assert not failures, "\n".join(failures)


def test_webhook_refusals_are_documented(api: Any) -> None:
    def unsigned(case: Any) -> None:
        case.call_and_validate(checks=CHECKS)

    failures = fuzz(api.include(path_regex="^/webhooks/"), GenerationMode.POSITIVE, unsigned)
    assert not failures, "\n".join(failures)
