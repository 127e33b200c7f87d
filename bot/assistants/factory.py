"""`make_backend`: the assistant API the settings name, on the OpenAI SDK."""

from __future__ import annotations

import functools
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2
from openai import AsyncAzureOpenAI, AsyncOpenAI, DefaultAioHttpClient
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.assistants.base import AssistantBackend
from bot.settings import Settings
from bot.setup_rules import azure_api_version
from bot.tools.mcp_client import McpTools
from bot.tools.slack_search import ClientFor, SlackSearch


def make_backend(
    settings: Settings, engine: AsyncEngine, *, search_client: ClientFor | None = None
) -> AssistantBackend:
    """The backend the settings name, on the SDK's aiohttp transport.

    aiohttp (already here for Slack) costs about half the CPU per OpenAI call of the
    SDK's default httpx transport, and polling makes several calls per answer. The chat
    backend keeps its threads in the bot's database (`engine`). Workspace search calls Slack
    with the client `search_client` gives for each turn's workspace. Only the named backend's
    modules are imported (the chat backend's alone cost ~14 ms at every start).
    """
    client = make_client(settings)
    tools = mcp_tools(settings, search_client)
    if settings.assistant_api == "threads":
        from bot.assistants.threads import ThreadsBackend

        assert settings.openai_assistant_id is not None
        return ThreadsBackend(
            client,
            assistant_id=settings.openai_assistant_id,
            instructions=settings.assistant_instructions,
            context_tokens=settings.context_tokens,
            tools=tools,
            max_tool_calls=settings.tool_calls_per_turn,
        )
    if settings.assistant_api == "chat":
        from bot.assistants.chat import ChatBackend

        return ChatBackend(
            client,
            engine,
            model=settings.openai_model,
            instructions=settings.assistant_instructions,
            context_tokens=settings.context_tokens,
            completion_timeout_s=max(settings.answer_deadline_s, settings.openai_timeout_s),
            tools=tools,
            max_tool_calls=settings.tool_calls_per_turn,
        )
    from bot.assistants.responses import ResponsesBackend

    return ResponsesBackend(
        client,
        model=settings.openai_model,
        instructions=settings.assistant_instructions,
        tools=hosted_tools(settings),
        mcp_servers=settings.mcp_servers,
        # OpenAI calls the MCP servers itself; workspace search is the bot's to run.
        functions=McpTools((), timeout_s=settings.tool_timeout_s, search=tools.search),
        max_tool_calls=settings.tool_calls_per_turn,
    )


def make_client(
    settings: Settings, *, max_retries: int | None = None, timeout_s: float | None = None
) -> AsyncOpenAI:
    """OpenAI (or OPENAI_BASE_URL), or Azure OpenAI when AZURE_OPENAI_ENDPOINT is set; on
    Azure the model setting names the deployment, and the sign-in is the API key or, with
    AZURE_OPENAI_AUTH=entra, Entra ID (azure-identity, imported only then)."""
    retries = settings.openai_max_retries if max_retries is None else max_retries
    timeout = settings.openai_timeout_s if timeout_s is None else timeout_s
    if settings.azure_openai_endpoint:
        version = azure_api_version(settings.assistant_api, settings.openai_api_version)
        entra = settings.azure_auth == "entra"
        return AsyncAzureOpenAI(
            http_client=DefaultAioHttpClient(verify=tls_context()),
            azure_endpoint=settings.azure_openai_endpoint,
            azure_ad_token_provider=entra_token_provider() if entra else None,
            api_key=None if entra else settings.openai_api_key,
            api_version=version,
            max_retries=retries,
            timeout=timeout,
        )
    return AsyncOpenAI(
        http_client=DefaultAioHttpClient(verify=tls_context()),
        api_key=settings.openai_api_key,
        base_url=settings.openai_base_url,
        max_retries=retries,
        timeout=timeout,
    )


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The certificate authorities every OpenAI client of the process verifies with, loaded
    once (about 20 ms of CPU per client otherwise: the start-up check's and the backend's),
    built exactly as the SDK's transports build their own (SSL_CERT_FILE and SSL_CERT_DIR
    honoured)."""
    return httpx2.create_ssl_context()


AZURE_SCOPE = "https://cognitiveservices.azure.com/.default"


def entra_token_provider() -> Callable[[], Awaitable[str]]:
    """Entra ID tokens for Azure OpenAI from `DefaultAzureCredential` (environment, workload
    or managed identity, `az login`, …), refreshed by azure-identity before they expire."""
    from azure.identity.aio import DefaultAzureCredential, get_bearer_token_provider

    return get_bearer_token_provider(DefaultAzureCredential(), AZURE_SCOPE)


def mcp_tools(settings: Settings, search_client: ClientFor | None = None) -> McpTools:
    """The configured MCP servers, with the bot as their client, and workspace search when
    SLACK_SEARCH is on."""
    search = SlackSearch(search_client) if settings.slack_search and search_client else None
    return McpTools(settings.mcp_servers, timeout_s=settings.tool_timeout_s, search=search)


def hosted_tools(settings: Settings) -> list[dict[str, Any]]:
    tools: list[dict[str, Any]] = []
    if settings.openai_web_search:
        tools.append({"type": "web_search"})
    if settings.openai_vector_store_ids:
        tools.append(
            {"type": "file_search", "vector_store_ids": list(settings.openai_vector_store_ids)}
        )
    return tools
