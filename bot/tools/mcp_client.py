"""The bot as an MCP client (chat and threads backends; workspace search on every backend).

Each listing and each call opens its own Streamable HTTP session with the server: a turn
makes a handful of calls at most, and nothing is held open between turns (or across a
restart). Every call has a time limit; what goes wrong in a tool goes back to the model as
the tool's error, and a server that cannot be reached is named so the user can be told.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot.assistants.base import ToolContext, chosen
from bot.tools import slack_search
from bot.tools.config import McpServer
from bot.tools.slack_search import SlackSearch

if TYPE_CHECKING:
    from mcp import Client

log = logging.getLogger(__name__)

DENIED_TEXT = "error: the user denied this tool call; answer without it, and say so"
MAX_OUTPUT_CHARS = 20_000
"""What the model gets of one tool's output at most."""
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class ToolSpec:
    """One tool of one server, as offered to the model."""

    server: str
    name: str
    description: str
    parameters: dict[str, Any]
    needs_approval: bool = False

    @property
    def function_name(self) -> str:
        """The name the model calls it by (function names allow [A-Za-z0-9_-], 64 long)."""
        return _UNSAFE.sub("_", f"{self.server}__{self.name}")[:64]

    @property
    def title(self) -> str:
        return f"{self.name} ({self.server})"

    def as_function(self) -> dict[str, Any]:
        """Chat Completions' tool format."""
        return {"type": "function", "function": self.assistants_function()}

    def assistants_function(self) -> dict[str, Any]:
        return {
            "name": self.function_name,
            "description": self.description[:1024],
            "parameters": self.parameters or {"type": "object", "properties": {}},
        }


@dataclass(frozen=True)
class Catalog:
    """The tools a turn may use, and the servers that could not be reached to list them."""

    tools: tuple[ToolSpec, ...] = ()
    unreachable: tuple[str, ...] = ()

    def find(self, function_name: str) -> ToolSpec | None:
        return next((t for t in self.tools if t.function_name == function_name), None)


EMPTY_CATALOG = Catalog()


@dataclass(frozen=True)
class ToolOutcome:
    text: str
    ok: bool
    unreachable_server: str | None = None
    sources: tuple[tuple[str, str], ...] = field(default_factory=tuple)


SEARCH_SPEC = ToolSpec(
    server=slack_search.SERVER,
    name=slack_search.TOOL,
    description=slack_search.DESCRIPTION,
    parameters=slack_search.PARAMETERS,
)


class McpTools:
    """A turn's tools: the MCP servers' and, with a turn's action token, workspace search."""

    def __init__(
        self,
        servers: Sequence[McpServer],
        *,
        timeout_s: float,
        search: SlackSearch | None = None,
    ) -> None:
        self._servers = {server.label: server for server in servers}
        self._timeout_s = timeout_s
        self._search = search

    @property
    def search(self) -> SlackSearch | None:
        return self._search

    @property
    def configured(self) -> bool:
        return bool(self._servers) or self._search is not None

    async def catalog(
        self, context: ToolContext | None = None, servers: Sequence[str] | None = None
    ) -> Catalog:
        """Every allowed tool of every server the turn may use (`servers`, a channel's
        choice; None: all), listed at once; a server that fails to list is left out and
        named. Workspace search joins them where the turn can use it."""
        used = [self._servers[label] for label in chosen(list(self._servers), servers)]
        listed = await asyncio.gather(*(self._list(server) for server in used))
        tools = tuple(tool for found in listed if found is not None for tool in found)
        down = tuple(s.label for s, found in zip(used, listed, strict=True) if found is None)
        if self._search is not None and self._search.usable(context):
            tools = (*tools, SEARCH_SPEC)
        return Catalog(tools, down)

    async def _list(self, server: McpServer) -> list[ToolSpec] | None:
        try:
            async with asyncio.timeout(self._timeout_s), self._client(server) as client:
                result = await client.list_tools()
        except Exception as exc:
            log.warning("MCP server %s: tools could not be listed: %r", server.label, exc)
            return None
        return [
            ToolSpec(
                server=server.label,
                name=tool.name,
                description=tool.description or tool.name,
                parameters=dict(tool.input_schema),
                needs_approval=server.needs_approval(tool.name),
            )
            for tool in result.tools
            if server.allows(tool.name)
        ]

    async def call(
        self, spec: ToolSpec, arguments: str, context: ToolContext | None = None
    ) -> ToolOutcome:
        """Run one call; every failure becomes an outcome the model can read."""
        if spec == SEARCH_SPEC:
            return await self._search_workspace(arguments, context)
        server = self._servers.get(spec.server)
        if server is None or not server.allows(spec.name):
            return ToolOutcome(f"error: the tool {spec.name} is not available", ok=False)
        try:
            parsed = json.loads(arguments or "{}")
        except ValueError:
            return ToolOutcome("error: the arguments are not valid JSON", ok=False)
        if not isinstance(parsed, dict):
            return ToolOutcome("error: the arguments must be a JSON object", ok=False)
        try:
            async with asyncio.timeout(self._timeout_s), self._client(server) as client:
                result = await client.call_tool(spec.name, parsed)
        except TimeoutError:
            log.warning("MCP %s: %s took longer than %ss", spec.server, spec.name, self._timeout_s)
            return ToolOutcome(
                f"error: the tool did not answer within {self._timeout_s:g} seconds", ok=False
            )
        except Exception as exc:
            log.warning("MCP server %s: calling %s failed: %r", spec.server, spec.name, exc)
            return ToolOutcome(
                f"error: the tool server {spec.server} could not be reached",
                ok=False,
                unreachable_server=spec.server,
            )
        text = "\n".join(block.text for block in result.content if block.type == "text")
        if not text and result.structured_content is not None:
            text = json.dumps(result.structured_content)
        text = text[:MAX_OUTPUT_CHARS]
        if result.is_error:
            return ToolOutcome(f"error: {text or 'the tool failed'}", ok=False)
        return ToolOutcome(text, ok=True)

    async def _search_workspace(self, arguments: str, context: ToolContext | None) -> ToolOutcome:
        if self._search is None or context is None or not self._search.usable(context):
            return ToolOutcome("error: workspace search is not available", ok=False)
        try:
            async with asyncio.timeout(self._timeout_s):
                ok, text, hits = await self._search.search(arguments, context)
        except TimeoutError:
            return ToolOutcome("error: the search took too long", ok=False)
        sources = tuple((hit.permalink, f"{hit.author} in #{hit.channel}") for hit in hits)
        return ToolOutcome(text, ok=ok, sources=sources)

    def _client(self, server: McpServer) -> _Session:
        return _Session(server)


class _Session:
    """An MCP session with its own HTTP client (carrying the server's headers), closed with it."""

    def __init__(self, server: McpServer) -> None:
        # The SDK is imported on first use: it costs a second and a half at start-up, which
        # a bot without MCP servers should not pay.
        from mcp import Client
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client

        self._http = create_mcp_http_client(headers=dict(server.headers))
        self._client = Client(streamable_http_client(server.url, http_client=self._http))

    async def __aenter__(self) -> Client:
        try:
            return await self._client.__aenter__()
        except BaseException:
            await self._http.aclose()
            raise

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self._client.__aexit__(None, None, None)
        finally:
            await self._http.aclose()
