"""One turn of an agent, whichever kind it is: a Pydantic AI agent or Dormouse's own protocol.

A Pydantic AI agent gets what Dormouse knows as message history (the customer profile, the
memory window and the business's context first, then the conversation's bounded history),
the built-in tools beside its own, a request limit and a deadline. Every tool call is
recorded on ``deps.effects`` with its result or error and duration, and every model response
and tool result is journaled as it happens (``agent/journal.py``), so a retry replays them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic_ai import Agent as PydanticAgent
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.direct import model_request
from pydantic_ai.exceptions import (
    ApprovalRequired,
    CallDeferred,
    ModelRetry,
    SkipToolExecution,
    ToolRetryError,
    UsageLimitExceeded,
)
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    SystemPromptPart,
    TextPart,
    ToolCallPart,
    UserPromptPart,
)
from pydantic_ai.tools import ToolDefinition
from pydantic_ai.usage import UsageLimits
from pydantic_core import ValidationError

from agent.base import AnyAgent, TurnContext
from agent.deps import ToolCall, TurnDeps, TurnEffects
from agent.interrupts import Interrupted
from agent.journal import Journal, JournalMismatch, StepJournal, replayed_call, tool_result
from agent.loop import run_on_agent_loop
from agent.model_meter import ModelMeter
from agent.summary import extractive_summary
from agent.tools import BUILTIN_NAMES, DEFAULT_TOOL_TIMEOUT, Toolbox, builtin_toolset
from conversations.channel_names import FACTS
from conversations.errors import TurnOverLimit
from conversations.metrics import TOOL_CALLS
from conversations.states import Direction
from conversations.transcript import MessageView

log = logging.getLogger(__name__)

# Some OpenAI-compatible servers refuse a request with no user message: an outbound opening
# (nothing from the customer yet) asks for the first message as the user side.
OPENING_PROMPT = (
    "(No message from the customer yet: you are starting this conversation. "
    "Write the first message to the customer.)"
)

SUMMARY_TIMEOUT = 60.0  # seconds; past it the extractive summary stands in
SUMMARY_INSTRUCTIONS = (
    "Summarize this customer conversation in two or three sentences: what the customer "
    "wanted and how it ended."
)


@dataclass(frozen=True, slots=True)
class TurnLimits:
    model_requests: int = 8
    tool_timeout: float = DEFAULT_TOOL_TIMEOUT
    deadline: float | None = None  # seconds for the whole run, model calls and tools


@dataclass(frozen=True, slots=True)
class AgentTurn:
    """What the agent answered, and what it cost."""

    replies: list[str]
    model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    model_requests: int = 0
    steps: list[dict[str, Any]] = field(default_factory=list)  # the journal's, in order


def run_agent_turn(
    agent: AnyAgent, context: TurnContext, limits: TurnLimits, journal: Journal | None = None
) -> AgentTurn:
    """Run one turn, replaying what ``journal`` recorded of an earlier attempt.

    Raises ``TurnOverLimit`` when the agent passes ``limits.model_requests``, ``LeaseLost``
    when the journal refuses a step (another worker took the turn over).
    """
    if not isinstance(agent, PydanticAgent):
        return AgentTurn(agent.run_turn(context, Toolbox(context.deps)))
    journal = journal if journal is not None else Journal()
    started = time.monotonic()
    deps = context.deps

    deadline = limits.deadline
    while True:
        try:
            return _run(agent, context, limits, journal, deadline)
        except JournalMismatch as exc:
            log.warning(
                "turn %d of conversation %s starts fresh: its journal does not match: %s",
                deps.turn_number,
                deps.conversation_id,
                exc,
            )
            journal.restart()
        except Interrupted as exc:
            log.info(
                "turn %d of conversation %s interrupted by a new message; asking again with it",
                deps.turn_number,
                deps.conversation_id,
            )
            journal.resume(exc)
        deps.effects = TurnEffects()  # what the replayed built-ins decided is decided again
        if limits.deadline is not None:  # one deadline for the turn, however many runs
            deadline = limits.deadline - (time.monotonic() - started)


def _run(
    agent: PydanticAgent[TurnDeps, Any],
    context: TurnContext,
    limits: TurnLimits,
    journal: Journal,
    deadline: float | None,
) -> AgentTurn:
    run = agent.run(
        user_prompt(context),
        deps=context.deps,
        message_history=message_history(context),
        instructions=_style(context.deps.channel),
        toolsets=[builtin_toolset()],
        # The journal first (outermost): a replayed response is neither sent nor metered.
        capabilities=[
            StepJournal(journal),
            ToolRecorder(limits.tool_timeout, journal),
            ModelMeter(),
        ],
        usage_limits=UsageLimits(request_limit=limits.model_requests),
    )
    try:
        # The run waits on the model on the process's agent loop, beside every other turn in
        # flight; this thread waits for it, never past the deadline (then it is cancelled).
        result = run_on_agent_loop(run, deadline)
    except UsageLimitExceeded as exc:
        raise TurnOverLimit(
            f"the agent made more than {limits.model_requests} model requests in one turn "
            f"({exc}); TURN_MAX_MODEL_REQUESTS sets the limit"
        ) from None
    output = result.output
    text = output if isinstance(output, str) else json.dumps(output, default=str)
    usage = result.usage
    return AgentTurn(
        replies=[text] if text.strip() else [],
        model=_answered_by(result.response, agent) or model_name(agent),
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        model_requests=usage.requests,
        steps=list(journal.steps),
    )


def _style(channel: str) -> str | None:
    """How a reply should read on the channel (``FACTS``); the channel shapes it again."""
    facts = FACTS.get(channel)
    return facts.style if facts is not None else None


def summarize(agent: AnyAgent, messages: Sequence[MessageView], finish_reason: str | None) -> str:
    """A short summary of a finished conversation; extractive when the model cannot help."""
    if not isinstance(agent, PydanticAgent):
        return agent.summarize(messages, finish_reason)
    transcript = "\n".join(f"{m.role}: {m.body}" for m in messages)
    request = ModelRequest(
        parts=[
            SystemPromptPart(SUMMARY_INSTRUCTIONS),
            UserPromptPart(f"{transcript}\n\n(ended: {finish_reason})"),
        ]
    )
    if agent.model is not None:
        try:
            response = run_on_agent_loop(model_request(agent.model, [request]), SUMMARY_TIMEOUT)
            text = "".join(p.content for p in response.parts if isinstance(p, TextPart)).strip()
            if text:
                return text
        except Exception:  # a summary is worth having even when the model is down
            pass
    return extractive_summary(messages, finish_reason)


def model_name(agent: AnyAgent) -> str | None:
    """``provider:model`` of a Pydantic AI agent, for records and ``dormouse agents``."""
    if not isinstance(agent, PydanticAgent):
        return None
    model = agent.model
    if model is None or isinstance(model, str):
        return model
    # openai-chat and openai-responses are both "openai": say which API is spoken, since
    # OpenAI-compatible servers (Ollama, vLLM) speak Chat Completions only.
    kind = {"OpenAIChatModel": "openai-chat", "OpenAIResponsesModel": "openai-responses"}
    name = f"{kind.get(type(model).__name__, model.system)}:{model.model_name}"
    base_url = model.base_url
    # An OpenAI-compatible server of the business's own (MODEL_BASE_URL): say which.
    if base_url and "api.openai.com" not in base_url:
        name += f" at {base_url.rstrip('/')}"
    return name


def _answered_by(response: ModelResponse, agent: AnyAgent) -> str | None:
    """The model that answered (an override in tests, a fallback model in production),
    spelled as ``dormouse agents`` spells it when it is the agent's own model."""
    if not response.model_name:
        return None
    name = response.model_name.rstrip(":")
    own = getattr(agent, "model", None)
    if not isinstance(own, str | None) and getattr(own, "model_name", None) == name:
        return model_name(agent)
    return f"{response.provider_name}:{name}" if response.provider_name else name


def user_prompt(context: TurnContext) -> str:
    """The newest message is the run's prompt; the others of this turn precede it in history."""
    if context.opening or not context.new_messages:
        return OPENING_PROMPT
    return context.new_messages[-1].body


def message_history(context: TurnContext) -> list[ModelMessage]:
    """What Dormouse knows, as the run's history: the same bounded reads as ever, flat."""
    known = _what_dormouse_knows(context)
    history: list[ModelMessage] = [ModelRequest(parts=[SystemPromptPart(known)])]
    for message in (*context.history, *context.new_messages[:-1]):
        if message.direction == Direction.INBOUND:
            history.append(ModelRequest(parts=[UserPromptPart(message.body)]))
        else:
            history.append(ModelResponse(parts=[TextPart(message.body)]))
    return history


def _what_dormouse_knows(context: TurnContext) -> str:
    deps = context.deps
    parts = [
        f"Service: {deps.service}. Channel: {deps.channel}. "
        f"This is turn {deps.turn_number} of the conversation."
    ]
    if deps.customer_name or deps.customer_attributes:
        parts.append(
            f"Customer: {deps.customer_name or 'unknown name'}; "
            f"attributes: {json.dumps(deps.customer_attributes, default=str)}"
        )
    if context.memory:
        parts.append(
            "What you remember of this customer (newest first):\n"
            + "\n".join(f"- [{m.kind} {m.created_at:%Y-%m-%d}] {m.text}" for m in context.memory)
        )
    if context.earlier:
        parts.append(
            "How this conversation began:\n"
            + "\n".join(f"- {m.role}: {m.body}" for m in context.earlier)
        )
    if deps.context:
        parts.append(f"Context from the business: {json.dumps(deps.context, default=str)}")
    return "\n\n".join(parts)


class ToolRecorder(AbstractCapability[TurnDeps]):
    """Records every tool call of a run and journals its result (or replays the journaled
    one); bounds the ones that name no time limit; tells the model of a tool's exception
    instead of failing the turn."""

    def __init__(self, default_timeout: float, journal: Journal | None = None) -> None:
        self.default_timeout = default_timeout
        self.journal = journal if journal is not None else Journal()

    async def wrap_tool_execute(
        self,
        ctx: Any,
        *,
        call: ToolCallPart,
        tool_def: ToolDefinition,
        args: Any,
        handler: Any,
    ) -> Any:
        deps: TurnDeps = ctx.deps
        recorded = self.journal.replay_tool(ctx.messages, call)
        if recorded is not None:
            if call.tool_name in BUILTIN_NAMES:
                # A built-in only decides what the commit applies (on deps.effects): deciding
                # it again rebuilds what the crashed attempt decided, and touches nothing.
                await handler(args)
            deps.effects.tool_calls.append(replayed_call(recorded))
            return tool_result(recorded)
        returned, record = await self._execute(deps, call, tool_def, args, handler)
        await self.journal.record_tool(ctx.messages, call, returned, record.as_json())
        return returned

    async def _execute(
        self, deps: TurnDeps, call: ToolCallPart, tool_def: ToolDefinition, args: Any, handler: Any
    ) -> tuple[Any, ToolCall]:
        limit = tool_def.timeout or self.default_timeout
        started = time.perf_counter()
        try:
            # A thread running a sync tool cannot be killed: past the limit it is abandoned.
            result = await asyncio.wait_for(handler(args), limit)
        except TimeoutError:
            error = f"{call.tool_name} took longer than {limit:g}s and was abandoned"
            return f"error: {error}", _record(deps, call, started, error=error, outcome="timeout")
        except (ToolRetryError, ModelRetry) as exc:
            _record(deps, call, started, error=f"retry: {exc}", outcome="retry")
            raise
        except (CallDeferred, ApprovalRequired, SkipToolExecution):
            raise
        except Exception as exc:
            error = f"{exc.__class__.__name__}: {exc}"
            log.warning(
                "tool %s of conversation %s failed; the model is told",
                call.tool_name,
                deps.conversation_id,
                exc_info=True,
            )
            return f"error: {error}", _record(deps, call, started, error=error, outcome="error")
        return result, _record(deps, call, started, result=result, outcome="ok")

    async def on_tool_validate_error(
        self,
        ctx: Any,
        *,
        call: ToolCallPart,
        tool_def: ToolDefinition,
        args: Any,
        error: ValidationError | ModelRetry,
    ) -> Any:
        # Invalid arguments go back to the model to correct (Pydantic AI's retry); recorded.
        _record(
            ctx.deps,
            call,
            time.perf_counter(),
            error=f"invalid arguments: {error}",
            outcome="invalid_arguments",
        )
        raise error


def _record(
    deps: TurnDeps,
    call: ToolCallPart,
    started: float,
    *,
    outcome: str,
    result: Any = None,
    error: str | None = None,
) -> ToolCall:
    TOOL_CALLS.labels(call.tool_name, outcome).inc()
    try:
        arguments = call.args_as_dict()
    except ValueError:  # arguments that are not even JSON: keep them as written
        arguments = {"raw": str(call.args)}
    shown = None if error is not None else (result if isinstance(result, str) else repr(result))
    recorded = ToolCall(
        name=call.tool_name,
        arguments=arguments,
        result=shown,
        error=error,
        duration_ms=round((time.perf_counter() - started) * 1000),
    )
    deps.effects.tool_calls.append(recorded)
    return recorded
