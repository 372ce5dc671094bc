"""Which agent runs: a configured OpenAI-compatible model, else the offline default."""

from __future__ import annotations

from agent.base import Agent
from agent.offline import OfflineAgent
from agent.openai_compat import OpenAICompatibleAgent
from conversations.settings import Settings


def build_agent(settings: Settings) -> Agent:
    if settings.model_base_url:
        return OpenAICompatibleAgent(
            settings.model_base_url,
            settings.model_name,
            settings.model_api_key,
            settings.model_timeout,
        )
    return OfflineAgent()
