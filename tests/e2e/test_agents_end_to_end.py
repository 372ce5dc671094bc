"""The business's agents in real processes: Acme's support agent calling its tool through an
OpenAI-compatible server, and a turn retried after its worker died past a side effect."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.stack import Stack, wait_until
from tests.fakes.model_api import FakeModel
from tests.fakes.twilio_api import FakeTwilio

pytestmark = pytest.mark.e2e

CUSTOMER = "+14155550177"
SUPPORT_NUMBER = "+15005550006"


def test_acme_support_answers_from_its_order_table_over_a_real_tool_call(
    make_stack: Callable[..., Stack], fake_twilio: FakeTwilio, fake_model: FakeModel, tmp_path: Path
) -> None:
    stack = make_stack(
        DORMOUSE_AGENTS="examples.acme.agents",
        MODEL_BASE_URL=fake_model.url,
        ACME_ORDERS_DB=str(tmp_path / "orders.db"),
        SMS_SERVICES=f"{SUPPORT_NUMBER}=support",
    ).start()
    assert stack.text("hi, where is order A-1001?", CUSTOMER, to=SUPPORT_NUMBER).status_code == 200

    [reply] = fake_twilio.wait_for(1, to=CUSTOMER, timeout=30)
    assert reply.body == "ack: order A-1001: shipped, arrives Thursday"
    assert reply.from_ == SUPPORT_NUMBER
    offered = {t["function"]["name"] for t in fake_model.requests[0]["tools"]}  # type: ignore[index, union-attr]
    assert offered == {"lookup_order", "end_conversation", "handoff_to_human", "remember"}

    [conv] = stack.conversations(CUSTOMER)
    detail = wait_until(lambda: (d := stack.conversation(conv["id"]))["turns"] and d)
    assert detail["service"] == "support"
    [turn] = detail["turns"]
    [call] = turn["tool_calls"]
    assert (call["name"], call["arguments"]) == ("lookup_order", {"order_id": "A-1001"})
    assert turn["model_requests"] == 2
    assert detail["usage"] == {"input_tokens": 22, "output_tokens": 14, "model_requests": 2}


def test_a_turn_retried_after_its_worker_died_past_a_tool_gives_the_tool_the_same_key(
    make_stack: Callable[..., Stack], fake_twilio: FakeTwilio, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.txt"
    stack = make_stack(
        DORMOUSE_AGENTS="tests.e2e.crashing_agents", CHARGE_LEDGER=str(ledger)
    ).start(workers=0)
    stack.start_worker("doomed", pool="solo")
    stack.text("please charge my card", CUSTOMER)
    wait_until(lambda: stack.processes["doomed"].poll() is not None, what="the worker to die")
    assert fake_twilio.sent_to(CUSTOMER) == []

    stack.start_worker("survivor")
    [reply] = fake_twilio.wait_for(1, to=CUSTOMER, timeout=40)
    assert reply.body == "Done: your card was charged 5.00"
    [conv] = stack.conversations(CUSTOMER)
    assert ledger.read_text().splitlines() == [f"{conv['id']}:1", f"{conv['id']}:1"]
    assert len(fake_twilio.sent_to(CUSTOMER)) == 1


@pytest.mark.parametrize(
    ("killed_in", "replayed"),
    [
        ("charge_card", [True, False, False, False, False]),  # after the first response
        (2, [True, True, False, False, False]),  # the second model request: after the charge
        (3, [True, True, True, True, False]),  # the final one: after the receipt
    ],
)
def test_kill_9_of_the_turn_worker_mid_turn_replays_its_journal_one_charge_one_paid_call(
    make_stack: Callable[..., Stack],
    fake_model: FakeModel,
    fake_twilio: FakeTwilio,
    tmp_path: Path,
    killed_in: int | str,
    replayed: list[bool],
) -> None:
    fake_model.tool_plan = [
        ("charge_card", {"amount_cents": 500}),
        ("send_receipt", {"email": "ann@example.com"}),
    ]
    hold = tmp_path / "hold"
    if isinstance(killed_in, int):
        fake_model.delays = {killed_in: 30}  # hangs there until its worker is killed
    else:
        hold.touch()  # charge_card waits there until its worker is killed
    ledger = tmp_path / "ledger.txt"
    stack = make_stack(
        DORMOUSE_AGENTS="tests.e2e.journal_agents",
        MODEL_BASE_URL=fake_model.url,
        CHARGE_LEDGER=str(ledger),
        CHARGE_HOLD=str(hold),
    ).start(workers=0)
    stack.start_worker("doomed", pool="solo")
    stack.text("please charge my card", CUSTOMER)
    if isinstance(killed_in, int):
        fake_model.wait_for_requests(killed_in)
    else:
        wait_until(lambda: hold.with_suffix(".reached").exists())
    stack.kill9("doomed")
    assert fake_twilio.sent_to(CUSTOMER) == []
    hold.unlink(missing_ok=True)

    stack.start_worker("survivor")
    [reply] = fake_twilio.wait_for(1, to=CUSTOMER, timeout=40)
    assert reply.body == "ack: receipt sent to ann@example.com"
    [conv] = stack.conversations(CUSTOMER)
    key = f"{conv['id']}:1"
    assert ledger.read_text().splitlines() == [f"charge {key}", f"receipt {key}"]
    assert fake_model.answered == 3  # each model step answered (and paid for) once
    detail = wait_until(lambda: (d := stack.conversation(conv["id"]))["turns"] and d)
    [turn] = detail["turns"]
    assert [s["replayed"] for s in turn["steps"]] == replayed
    assert detail["usage"] == {"input_tokens": 33, "output_tokens": 21, "model_requests": 3}
    assert len(fake_twilio.sent_to(CUSTOMER)) == 1
