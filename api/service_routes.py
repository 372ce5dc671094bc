"""``GET /v1/services``: the services a chat can be opened with, and the agent behind each,
as ``dormouse agents`` and the ``up`` banner list them (``AgentCatalog.services``)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from agent.catalog import AgentCatalog, load_agents
from api.deps import require_api_key, state

router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)], tags=["services"])


class ServiceOut(BaseModel):
    name: str = Field(description="The service, as `service` on POST /v1/chat/conversations.")
    agent: str = Field(description="What answers it: `pydantic-ai`, `offline` or a class name.")
    model: str | None = Field(description="The model a Pydantic AI agent calls, else null.")
    tools: list[str] = Field(description="The tools the agent may call.")
    default: bool = Field(description="Whether it is DEFAULT_SERVICE.")


@router.get("/services")
async def list_services(request: Request) -> list[ServiceOut]:
    """Every service with an agent or an address routed to it, sorted by name."""
    settings = state(request).settings
    catalog = await _catalog(request)
    return [
        ServiceOut(
            name=info.service,
            agent=info.kind,
            model=info.model,
            tools=list(info.tools),
            default=info.service == settings.default_service,
        )
        for info in catalog.services(settings)
    ]


async def _catalog(request: Request) -> AgentCatalog:
    # Loaded once per app, on first use: it imports the business's DORMOUSE_AGENTS module
    # (which `dormouse api` already checked at start-up), so a thread, not the event loop.
    found: AgentCatalog | None = getattr(request.app.state, "agent_catalog", None)
    if found is None:
        found = await run_in_threadpool(load_agents, state(request).settings)
        request.app.state.agent_catalog = found
    return found
