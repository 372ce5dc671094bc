"""The step journal: each model response and tool result of a turn, committed as it happens
(all but the final answer, which calls nothing and is committed with the turn).

A capability around the model request (and ``ToolRecorder`` around tool calls) adds it to
whichever Pydantic AI agent the business wrote. A retried turn (same conversation and turn
number: the idempotency key) finds its earlier attempt's steps and replays them: the model is
not asked again and the tool not run again; the run goes on live from the first step without
a record. Each model step records a digest of what was asked (messages, instructions, tool
definitions; not timestamps or run ids): a retry asking something else (a deploy changed the
agent) raises ``JournalMismatch`` and the turn starts fresh. The retry answers the messages
the journaled attempt answered (``through``), so one that arrived meanwhile does not; a
message that interrupted a model request (``agent/interrupts.py``) is added again at the step
it was added at, since each model step records the newest message it was asked with.

Writes go through a thread (``asyncio.to_thread``): the agent loop carries every turn of the
process, and a database write on it would stall them all.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.messages import (
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelResponse,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_core import PydanticSerializationError

from agent.deps import ToolCall, TurnDeps
from agent.interrupts import MAX_INTERRUPTIONS, Arrivals, Interrupted, add_messages
from agent.journal_store import RecordedStep
from conversations.errors import DormouseError
from conversations.metrics import JOURNAL_REPLAYED

log = logging.getLogger(__name__)

MODEL = "model"
TOOL = "tool"

# Set by Pydantic AI for each run or attempt: never a difference in what was asked.
_VOLATILE = frozenset(
    {"timestamp", "run_id", "conversation_id", "model_id", "history_digest", "workspace_ref"}
)


class JournalMismatch(DormouseError):
    """The journal answers a question the agent no longer asks: the turn starts fresh."""


class JournalWriter(Protocol):
    def append(self, step: RecordedStep) -> None: ...
    def discard(self) -> None: ...


@dataclass(slots=True)
class Journal:
    """One turn's journal: what a retry may replay, and the steps of this run in order."""

    recorded: Sequence[RecordedStep] = ()
    writer: JournalWriter | None = None
    # The newest message this turn answers, kept with each model step: a retry answers the
    # same messages (one that arrived meanwhile waits for the next turn, as during any turn).
    through: int | None = None
    # The customer's messages that no turn answered yet; None: nothing is added mid-turn.
    arrivals: Arrivals | None = None
    step: int = -1  # the model step the run is at
    steps: list[dict[str, Any]] = field(default_factory=list)  # folded into the turn record
    interruptions: int = 0
    _by_position: dict[tuple[int, int], RecordedStep] = field(
        default_factory=dict, init=False, repr=False
    )
    _start_through: int | None = field(default=None, init=False, repr=False)
    _pending_through: int | None = field(default=None, init=False, repr=False)
    _noted: set[tuple[int, int]] = field(default_factory=set, init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_position = {(s.step, s.call): s for s in self.recorded}
        self._start_through = self.through

    def restart(self) -> None:
        """Forget what was recorded (fenced: ``LeaseLost`` if the lease is gone) and start over."""
        if self.writer is not None and self._by_position:
            self.writer.discard()
        self.recorded, self._by_position, self.step, self.steps = (), {}, -1, []
        # Messages added mid-turn are asked with from the first step of the fresh start.
        if self.through != self._start_through:
            self._pending_through = self.through
        self._noted, self.through = set(), self._start_through

    def resume(self, interrupted: Interrupted) -> None:
        """Run again after an interruption: what this attempt journaled is replayed (and was
        noted already), and the cancelled step is asked with the messages through
        ``interrupted.through`` added."""
        self.step, self.through = -1, self._start_through
        self._pending_through = interrupted.through
        self.interruptions += 1

    # --- model steps

    async def catch_up(self, ctx: Any, request_context: Any) -> None:
        """Enter the next model step, adding the customer's messages it is to be asked with:
        those a journaled step was asked with, those that interrupted it, or those that
        arrived since the last step (during a tool call) when the channel interrupts."""
        self.step += 1
        if self.arrivals is None:
            return
        after = self.through or 0
        recorded = self._by_position.get((self.step, 0))
        if recorded is not None:
            target = _through(recorded)
        elif self._pending_through is not None:
            target, self._pending_through = self._pending_through, None
        elif self._may_interrupt():
            target = await self.arrivals.newer(after)
        else:
            return
        if target is not None and target > after:
            add_messages(ctx, request_context, await self.arrivals.take(after, target))
            self.through = target

    async def ask(self, handler: Any, request_context: Any) -> ModelResponse:
        """The model's response, unless a customer's message arrives first: then the request
        is cancelled and ``Interrupted`` raised (its messages are added when it is asked
        again)."""
        arrivals = self.arrivals
        if arrivals is None or not self._may_interrupt():
            response: ModelResponse = await handler(request_context)
            return response
        request = asyncio.ensure_future(handler(request_context))
        arrived = asyncio.ensure_future(arrivals.wait(self.through or 0))
        try:
            await asyncio.wait({request, arrived}, return_when=asyncio.FIRST_COMPLETED)
            if not request.done() and arrived.exception() is not None:
                # Listening failed (the database, a moment): the message waits for the next
                # turn, as with coalesce; the request goes on.
                log.warning("listening for new messages failed: %r", arrived.exception())
                await asyncio.wait({request})
        finally:
            await _cancel(arrived)
            if not request.done():  # a response that came with the message is kept
                await _cancel(request)
        if not request.cancelled():
            if arrived.done() and not arrived.cancelled() and arrived.exception() is None:
                arrivals.missed()  # came with the response: the next step reads it again
            answered: ModelResponse = request.result()
            return answered
        through = arrived.result()
        await arrivals.interrupted(self.through or 0, through)
        raise Interrupted(through)

    def _may_interrupt(self) -> bool:
        return (
            self.arrivals is not None
            and self.arrivals.interrupting
            and self.interruptions < MAX_INTERRUPTIONS
        )

    @property
    def has_rows(self) -> bool:
        """Whether the database holds steps of this turn (loaded, or written by this run)."""
        return bool(self._by_position)

    def note_final(self, response: ModelResponse) -> None:
        usage = response.usage
        final = RecordedStep(
            step=self.step,
            call=0,
            kind=MODEL,
            name=response.model_name or "",
            digest="",
            message=[],
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
        )
        self._note(final, replayed=False)

    def replay_model(self, digest: str) -> ModelResponse | None:
        """The journaled response of the step ``catch_up`` entered, if it has one."""
        recorded = self._by_position.get((self.step, 0))
        if recorded is None:
            return None
        if recorded.kind != MODEL or recorded.digest != digest:
            raise JournalMismatch(
                f"model request {self.step + 1} differs from the journaled one "
                "(the agent's instructions, tools or the conversation changed)"
            )
        [response] = ModelMessagesTypeAdapter.validate_python(recorded.message)
        assert isinstance(response, ModelResponse)
        self._note(recorded, replayed=True)
        return response

    async def record_model(self, digest: str, response: ModelResponse) -> None:
        usage = response.usage
        await self._append(
            RecordedStep(
                step=self.step,
                call=0,
                kind=MODEL,
                name=response.model_name or "",
                digest=digest,
                message=_dump([response]),
                # What this step was asked with, and what the run began with: a retry begins
                # where this attempt began, and adds the rest at the steps that added it.
                record={"messages_through": self.through, "started_through": self._start_through},
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
            )
        )

    # --- tool results

    def replay_tool(
        self, messages: Sequence[ModelMessage], call: ToolCallPart
    ) -> RecordedStep | None:
        """The journaled result of this tool call, or None: it runs."""
        position = _position(messages, call)
        recorded = self._by_position.get((self.step, position))
        if position == 0 or recorded is None or recorded.record is None:
            return None
        if recorded.kind != TOOL or recorded.digest != tool_digest(call):
            raise JournalMismatch(
                f"tool call {call.tool_name} of model step {self.step + 1} differs from the "
                f"journaled {recorded.name} (another tool or other arguments)"
            )
        self._note(recorded, replayed=True)
        return recorded

    async def record_tool(
        self,
        messages: Sequence[ModelMessage],
        call: ToolCallPart,
        result: Any,
        record: dict[str, Any],
    ) -> None:
        position = _position(messages, call)
        if position == 0:  # not a call of the run's last response: nothing to key it by
            return
        part = ToolReturnPart(call.tool_name, result, tool_call_id=call.tool_call_id)
        try:
            message = _dump([ModelRequest(parts=[part])])
        except PydanticSerializationError:  # a result Pydantic cannot write: it runs again
            return
        await self._append(
            RecordedStep(
                step=self.step,
                call=position,
                kind=TOOL,
                name=call.tool_name,
                digest=tool_digest(call),
                message=message,
                record=record,
            )
        )

    async def _append(self, step: RecordedStep) -> None:
        if self.writer is not None:
            await asyncio.to_thread(self.writer.append, step)
        self._by_position[(step.step, step.call)] = step  # replayed if the run is resumed
        self._note(step, replayed=False)

    def _note(self, step: RecordedStep, *, replayed: bool) -> None:
        if (step.step, step.call) in self._noted:  # resumed after an interruption: shown once
            return
        self._noted.add((step.step, step.call))
        if replayed:
            JOURNAL_REPLAYED.labels(step.kind).inc()
        self.steps.append(
            {
                "step": step.step,
                "call": step.call,
                "kind": step.kind,
                "name": step.name,
                "input_tokens": step.input_tokens,
                "output_tokens": step.output_tokens,
                "replayed": replayed,
            }
        )


async def _cancel(task: asyncio.Future[Any]) -> None:
    if not task.done():
        task.cancel()
    # Waits without raising the task's outcome (the caller reads it), while a cancellation
    # of this run itself (its deadline) still goes through.
    await asyncio.wait({task})


def answered_through(recorded: Sequence[RecordedStep]) -> int | None:
    """The newest message the journaled attempt began with, if it recorded a model step."""
    for step in recorded:
        if step.kind == MODEL:
            started = (step.record or {}).get("started_through")
            return started if isinstance(started, int) else _through(step)
    return None


def _through(step: RecordedStep) -> int | None:
    through = (step.record or {}).get("messages_through")
    return through if isinstance(through, int) else None


def replayed_call(recorded: RecordedStep) -> ToolCall:
    """The tool call as the turn record shows it, marked as taken from the journal."""
    return ToolCall(**{**(recorded.record or {}), "replayed": True})


def tool_result(recorded: RecordedStep) -> Any:
    """What the tool returned, from the journal."""
    [request] = ModelMessagesTypeAdapter.validate_python(recorded.message)
    [part] = request.parts
    assert isinstance(part, ToolReturnPart)
    return part.content


class StepJournal(AbstractCapability[TurnDeps]):
    """Journals (or replays) every model response of a run. Outermost of the run's
    capabilities, so a replayed response is neither metered nor sent."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def wrap_run(self, ctx: Any, *, handler: Any) -> Any:
        arrivals = self.journal.arrivals
        if arrivals is None or not arrivals.interrupting:
            return await handler()
        async with arrivals.watching():  # hints of this conversation, for the whole run
            return await handler()

    async def wrap_model_request(
        self, ctx: Any, *, request_context: Any, handler: Any
    ) -> ModelResponse:
        journal = self.journal
        await journal.catch_up(ctx, request_context)
        # What is asked, before the request's own hooks change it (Pydantic AI sets the
        # request's instructions in place): live and replayed steps take it at this point.
        digest = request_digest(request_context)
        replayed = journal.replay_model(digest)
        if replayed is not None:
            return replayed
        response = await journal.ask(handler, request_context)
        if not any(isinstance(part, ToolCallPart) for part in response.parts):
            # The final answer: it calls nothing, so nothing repeats if it is asked again,
            # and it is committed with the turn a moment later. Not journaled on its own (a
            # write per turn, and its prune at the commit, for a window of milliseconds).
            journal.note_final(response)
        else:
            await journal.record_model(digest, response)
        return response


def request_digest(request_context: Any) -> str:
    """What a model request asks, whatever the run or the hour: messages, instructions and
    tool definitions, without the timestamps and ids Pydantic AI stamps on them."""
    params = request_context.model_request_parameters
    asked = [
        _dump(request_context.messages),
        [p.content for p in params.instruction_parts or ()],
        [(t.name, t.description, t.parameters_json_schema) for t in params.function_tools],
    ]
    return _digest(_stable(asked))


def tool_digest(call: ToolCallPart) -> str:
    try:
        arguments: Any = call.args_as_dict()
    except ValueError:
        arguments = str(call.args)
    return _digest([call.tool_name, arguments])


def _dump(messages: Sequence[ModelMessage]) -> list[dict[str, Any]]:
    dumped: list[dict[str, Any]] = ModelMessagesTypeAdapter.dump_python(list(messages), mode="json")
    return dumped


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list | tuple):
        return [_stable(v) for v in value]
    return value


def _position(messages: Sequence[ModelMessage], call: ToolCallPart) -> int:
    """1 + the index of ``call`` among the parts of the run's last response; 0 if not there."""
    for message in reversed(messages):
        if isinstance(message, ModelResponse):
            for index, part in enumerate(message.parts):
                if isinstance(part, ToolCallPart) and part.tool_call_id == call.tool_call_id:
                    return index + 1
            return 0
    return 0
