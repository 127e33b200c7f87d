"""The assistant APIs behind one Protocol; `make_backend` picks the one the settings name."""

from __future__ import annotations

from typing import Any

from openai import AsyncOpenAI, DefaultAioHttpClient

from bot.assistants.base import AssistantBackend
from bot.assistants.responses import ResponsesBackend
from bot.assistants.threads import ThreadsBackend
from bot.settings import Settings


def make_backend(settings: Settings) -> AssistantBackend:
    """The backend the settings name, on the SDK's aiohttp transport.

    aiohttp (already here for Slack) costs about half the CPU per OpenAI call of the
    SDK's default httpx transport, and polling makes several calls per answer.
    """
    client = AsyncOpenAI(
        http_client=DefaultAioHttpClient(),
        api_key=settings.openai_api_key,
        base_url=settings.openai_base_url,
        max_retries=settings.openai_max_retries,
        timeout=settings.openai_timeout_s,
    )
    if settings.assistant_api == "threads":
        assert settings.openai_assistant_id is not None
        return ThreadsBackend(
            client,
            assistant_id=settings.openai_assistant_id,
            instructions=settings.assistant_instructions,
        )
    return ResponsesBackend(
        client,
        model=settings.openai_model,
        instructions=settings.assistant_instructions,
        tools=hosted_tools(settings),
    )


def hosted_tools(settings: Settings) -> list[dict[str, Any]]:
    tools: list[dict[str, Any]] = []
    if settings.openai_web_search:
        tools.append({"type": "web_search"})
    if settings.openai_vector_store_ids:
        tools.append(
            {"type": "file_search", "vector_store_ids": list(settings.openai_vector_store_ids)}
        )
    return tools
