"""Which agent serves which service: the business's ``DORMOUSE_AGENTS`` module, else defaults.

``DORMOUSE_AGENTS=<module>`` or ``<module>:<attribute>`` (attribute ``agents`` by default)
names a mapping of service name → agent. Every process loads it at start-up, so a typo fails
there with one line naming it, not on the first customer's message.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from openai import AsyncOpenAI
from pydantic_ai import Agent as PydanticAgent
from pydantic_ai.models import infer_model
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from agent.base import AnyAgent
from agent.deps import TurnDeps
from agent.offline import OfflineAgent
from agent.runtime import model_name
from agent.tools import BUILTIN_NAMES
from conversations.errors import ConfigurationError
from conversations.settings import Settings


@dataclass(frozen=True, slots=True)
class AgentInfo:
    """One line of ``dormouse agents`` and of the ``up`` banner."""

    service: str
    kind: str
    model: str | None
    tools: tuple[str, ...]

    def line(self) -> str:
        model = f" ({self.model})" if self.model else ""
        return f"{self.service}: {self.kind}{model}; tools: {', '.join(self.tools)}"


class AgentCatalog:
    """Service → agent; every service the business names none for gets ``default``."""

    def __init__(
        self, agents: Mapping[str, AnyAgent] | None = None, default: AnyAgent | None = None
    ) -> None:
        self.agents = dict(agents or {})
        self.default: AnyAgent = default if default is not None else OfflineAgent()

    def for_service(self, service: str) -> AnyAgent:
        return self.agents.get(service, self.default)

    def describe(self, default_service: str, routed: Iterable[str] = ()) -> list[AgentInfo]:
        """Every service that has an agent or receives messages (``routed``: the services
        SMS_SERVICES and EMAIL_SERVICES name), with the agent that answers it."""
        services = {default_service, *routed, *self.agents}
        return [_info(service, self.for_service(service)) for service in sorted(services)]

    def services(self, settings: Settings) -> list[AgentInfo]:
        """What ``dormouse agents``, the ``up`` banner and ``GET /v1/services`` list: the
        default service, every service a number or address routes to, every named agent."""
        return self.describe(settings.default_service, settings.routed_services())


def load_agents(settings: Settings) -> AgentCatalog:
    """The catalog ``settings`` describe; ``ConfigurationError`` with one clear line if not."""
    default = default_agent(settings)
    spec = settings.dormouse_agents.strip()
    if not spec:
        return AgentCatalog(default=default)
    module_name, _, attribute = spec.partition(":")
    attribute = attribute or "agents"
    if module_name.endswith(".py") or "/" in module_name:
        raise ConfigurationError(
            f"DORMOUSE_AGENTS={spec}: give the module's dotted name as Python imports it "
            f"(acme.agents), not a file path"
        )
    # Like celery -A and uvicorn: the business's module is found from where Dormouse runs.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        said = " ".join(str(exc).split())  # one line, whatever the library wrote
        raise ConfigurationError(
            f"DORMOUSE_AGENTS={spec}: importing {module_name!r} failed: "
            f"{exc.__class__.__name__}: {said}"
        ) from None
    if not hasattr(module, attribute):
        raise ConfigurationError(
            f"DORMOUSE_AGENTS={spec}: module {module_name!r} has no attribute {attribute!r}"
        )
    found = getattr(module, attribute)
    if not isinstance(found, Mapping):
        raise ConfigurationError(
            f"DORMOUSE_AGENTS={spec}: {module_name}.{attribute} must be a dict of "
            f"service name -> agent, not {type(found).__name__}"
        )
    agents: dict[str, AnyAgent] = {}
    for service, agent in found.items():
        if not isinstance(service, str) or not service.strip():
            raise ConfigurationError(
                f"DORMOUSE_AGENTS={spec}: service names must be non-empty strings, got {service!r}"
            )
        if not _is_agent(agent):
            raise ConfigurationError(
                f"DORMOUSE_AGENTS={spec}: the agent for service {service!r} is a "
                f"{type(agent).__name__}, not a pydantic_ai.Agent or an object with "
                "run_turn() and summarize()"
            )
        if isinstance(agent, PydanticAgent) and not _takes_turn_deps(agent):
            raise ConfigurationError(
                f"DORMOUSE_AGENTS={spec}: the agent for service {service!r} has "
                f"deps_type={getattr(agent.deps_type, '__name__', agent.deps_type)}; Dormouse "
                "gives every run dormouse.TurnDeps: Agent(..., deps_type=dormouse.TurnDeps)"
            )
        agents[service] = agent
    return AgentCatalog(agents, default)


def _takes_turn_deps(agent: PydanticAgent[Any, Any]) -> bool:
    deps_type = agent.deps_type
    # object is the default: an agent built without deps_type=dormouse.TurnDeps.
    return (
        isinstance(deps_type, type) and deps_type is not object and issubclass(TurnDeps, deps_type)
    )


def default_agent(settings: Settings) -> AnyAgent:
    """The env shorthand: ``MODEL`` (a Pydantic AI model string) or ``MODEL_BASE_URL`` (an
    OpenAI-compatible Chat Completions endpoint), else the offline agent."""
    if settings.model:
        try:
            model: Any = infer_model(settings.model)
        except Exception as exc:
            raise ConfigurationError(
                f"MODEL={settings.model}: {exc.__class__.__name__}: {exc}"
            ) from None
    elif settings.model_base_url:
        client = AsyncOpenAI(
            base_url=settings.model_base_url,
            # The SDK requires a key; local servers (vLLM, Ollama) take any.
            api_key=settings.model_api_key or "unused",
            timeout=settings.model_timeout,
            max_retries=settings.model_retries,
        )
        model = OpenAIChatModel(settings.model_name, provider=OpenAIProvider(openai_client=client))
    else:
        return OfflineAgent()
    return PydanticAgent(model, deps_type=TurnDeps, instructions=settings.agent_instructions)


def _is_agent(agent: object) -> bool:
    if isinstance(agent, PydanticAgent):
        return True
    return callable(getattr(agent, "run_turn", None)) and callable(
        getattr(agent, "summarize", None)
    )


def kind_of(agent: AnyAgent) -> str:
    """What runs a service, in a word: ``pydantic-ai``, ``offline``, or the class's name."""
    if isinstance(agent, PydanticAgent):
        return "pydantic-ai"
    return "offline" if isinstance(agent, OfflineAgent) else type(agent).__name__


def _info(service: str, agent: AnyAgent) -> AgentInfo:
    if isinstance(agent, PydanticAgent):
        own = [
            name
            for toolset in agent.toolsets
            for name in getattr(toolset, "tools", {})
            if name not in BUILTIN_NAMES
        ]
        return AgentInfo(service, kind_of(agent), model_name(agent), (*own, *BUILTIN_NAMES))
    return AgentInfo(service, kind_of(agent), None, BUILTIN_NAMES)
