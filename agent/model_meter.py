"""Counts each model request of a Pydantic AI run: latency, outcome and tokens.

A capability around the model request (Pydantic AI's ``wrap_model_request``), so it sees
every request a run makes, tool round trips included, and the model that served it (a
fallback model is named as itself), whichever agent the business wrote.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.messages import ModelResponse
from pydantic_ai.models import Model

from agent.deps import TurnDeps
from conversations.metrics import MODEL_REQUESTS, MODEL_SECONDS, MODEL_TOKENS


def model_label(model: Model) -> str:
    """``provider:model``: bounded (configuration picks it), never the base URL."""
    return f"{model.system}:{model.model_name}"


class ModelMeter(AbstractCapability[TurnDeps]):
    async def wrap_model_request(
        self, ctx: Any, *, request_context: Any, handler: Any
    ) -> ModelResponse:
        service = ctx.deps.service if isinstance(ctx.deps, TurnDeps) else ""
        model = model_label(request_context.model)
        started = time.perf_counter()
        try:
            response: ModelResponse = await handler(request_context)
        except Exception:
            MODEL_SECONDS.labels(service, model).observe(time.perf_counter() - started)
            MODEL_REQUESTS.labels(service, model, "error").inc()
            raise
        MODEL_SECONDS.labels(service, model).observe(time.perf_counter() - started)
        MODEL_REQUESTS.labels(service, model, "ok").inc()
        MODEL_TOKENS.labels(service, model, "input").inc(response.usage.input_tokens)
        MODEL_TOKENS.labels(service, model, "output").inc(response.usage.output_tokens)
        return response
