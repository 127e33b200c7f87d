"""The requests a Responses turn sends: their arguments (model, instructions, tools), and
creating them past what the API refuses but the bot can repair."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from openai import AsyncOpenAI
from openai.types.responses import Response

from bot.assistants.base import AssistantRejected, TurnOptions, chosen, joined_instructions
from bot.assistants.errors import translated_errors
from bot.assistants.responses_functions import ResponseFunctions
from bot.assistants.responses_items import output_call_ids, turn_key_of, unanswered_calls
from bot.assistants.turn_tools import TurnTools
from bot.attachments import Image, image_data_url
from bot.tools.config import McpServer

log = logging.getLogger(__name__)

_MCP_DOWN = re.compile(r"Error retrieving tool list from MCP server: '([^']+)'")
_UNANSWERED = re.compile(r"No tool output found for function call ([A-Za-z0-9_-]+)")
INTERRUPTED_TEXT = "error: this tool call was interrupted; it has no result"


def mcp_tool(server: McpServer) -> dict[str, Any]:
    """A configured server as the Responses API's remote `mcp` tool."""
    tool: dict[str, Any] = {
        "type": "mcp",
        "server_label": server.label,
        "server_url": server.url,
        "require_approval": "never",
    }
    if server.headers:
        tool["headers"] = dict(server.headers)
    if server.allowed_tools is not None:
        tool["allowed_tools"] = list(server.allowed_tools)
    if server.approval is True:
        tool["require_approval"] = "always"
    elif server.approval:
        tool["require_approval"] = {"always": {"tool_names": list(server.approval)}}
    return tool


class ResponseRequests:
    """Builds and creates a turn's responses (the bot's own tools offered by `functions`)."""

    def __init__(
        self,
        client: AsyncOpenAI,
        *,
        model: str,
        instructions: str | None,
        hosted_tools: list[dict[str, Any]],
        mcp_servers: Sequence[McpServer],
        functions: ResponseFunctions,
    ) -> None:
        self._client = client
        # Responses are started without the client's own retries: the service retries, and
        # looks for a response that a failed-looking request did start before starting another.
        self._once = client.with_options(max_retries=0)
        self._model = model
        self._instructions = instructions
        self._hosted_tools = hosted_tools
        self._mcp_servers = list(mcp_servers)
        self._functions = functions

    async def create(self, args: dict[str, Any], *, stream: bool = False) -> tuple[Any, list[str]]:
        """Create a background response (or its stream), and the MCP servers left out.

        An MCP server OpenAI cannot list fails the whole request: it is sent again without
        that server (the user is told which), rather than the turn going without an answer.

        A conversation holding a function call without an output (its turn ended before the
        bot sent one: the deadline passed, a retry gave up, a process died and the turn was
        given up) is refused by the API until that call is answered. The request is then
        sent once more, its input led by an output for each such call saying it was
        interrupted. Nothing is kept in between, so whichever process next asks in the
        thread repairs it, in the same request that carries its own input.
        """
        down: list[str] = []
        repaired = False
        while True:
            attempt = {**args, "tools": _without_servers(args.get("tools") or [], down)}
            if not attempt["tools"]:
                del attempt["tools"]
            try:
                with translated_errors("stream response" if stream else "create response"):
                    if stream:
                        created: Any = await self._once.responses.create(
                            background=True, stream=True, **attempt
                        )
                    else:
                        created = await self._once.responses.create(background=True, **attempt)
            except AssistantRejected as exc:
                unanswered = _UNANSWERED.search(str(exc))
                if unanswered is not None and not repaired:
                    repaired = True
                    args = await self._with_interrupted_calls(args, unanswered.group(1))
                    continue
                found = _MCP_DOWN.search(str(exc))
                if found is None or found.group(1) in down:
                    raise
                down.append(found.group(1))
                continue
            return created, down

    async def _with_interrupted_calls(self, args: dict[str, Any], named: str) -> dict[str, Any]:
        """`args` with an output first in its input for every function call the conversation
        leaves unanswered (`named`, the one the API named, at least)."""
        conversation_id = str(args["conversation"])
        with translated_errors("list conversation items"):
            page = await self._client.conversations.items.list(
                conversation_id, order="desc", limit=100
            )
        items = [
            (item.type, str(getattr(item, "call_id", "")))
            for item in reversed(page.data)
            if item.type in ("function_call", "function_call_output")
        ]
        calls = unanswered_calls(items, sending=output_call_ids(args["input"]), named=named)
        log.warning(
            "conversation %s: %d tool call(s) were left without an output; closing them",
            conversation_id,
            len(calls),
        )
        closing = [
            {"type": "function_call_output", "call_id": call, "output": INTERRUPTED_TEXT}
            for call in calls
        ]
        return {**args, "input": [*closing, *args["input"]]}

    async def first(
        self,
        conversation_id: str,
        text: str,
        turn_key: str,
        images: Sequence[Image],
        options: TurnOptions,
        tools: TurnTools,
    ) -> dict[str, Any]:
        """A turn's first response: its question, with the channel's options."""
        content: str | list[dict[str, Any]] = text
        if images:
            content = [{"type": "input_text", "text": text}] + [
                {"type": "input_image", "image_url": image_data_url(image)} for image in images
            ]
        return await self._args(
            conversation_id=conversation_id,
            turn_key=turn_key,
            input_items=[{"role": "user", "content": content}],
            model=options.model or self._model,
            instructions=joined_instructions(self._instructions, options.instructions),
            servers=options.mcp_servers,
            tools=tools,
        )

    async def following(
        self, response: Response, input_items: list[dict[str, Any]], tools: TurnTools
    ) -> dict[str, Any]:
        """A response that carries a turn on (tool outputs, an approval) after `response`:
        the same model, instructions and MCP servers as it had, read from it, so this holds
        after a restart too."""
        if response.conversation is None:
            raise AssistantRejected("the response to carry on has no conversation")
        instructions = response.instructions if isinstance(response.instructions, str) else None
        return await self._args(
            conversation_id=response.conversation.id,
            turn_key=turn_key_of(response),
            input_items=input_items,
            model=str(response.model),
            instructions=instructions,
            servers=[tool.server_label for tool in response.tools if tool.type == "mcp"],
            tools=tools,
        )

    async def _args(
        self,
        *,
        conversation_id: str,
        turn_key: str,
        input_items: list[dict[str, Any]],
        model: str,
        instructions: str | None,
        servers: Sequence[str] | None,
        tools: TurnTools,
    ) -> dict[str, Any]:
        args: dict[str, Any] = {
            "model": model,
            "conversation": conversation_id,
            "input": input_items,
            "store": True,
            "metadata": {"turn_key": turn_key},
            # A Conversation grows with every turn; "auto" drops its oldest items when it no
            # longer fits the model's window, where "disabled" (the default) fails the turn.
            "truncation": "auto",
        }
        if instructions:
            args["instructions"] = instructions
        used = chosen([server.label for server in self._mcp_servers], servers)
        offered = self._hosted_tools + [mcp_tool(s) for s in self._mcp_servers if s.label in used]
        offered += await self._functions.offered(tools)
        if offered:
            args["tools"] = offered
        return args


def _without_servers(tools: list[dict[str, Any]], labels: Sequence[str]) -> list[dict[str, Any]]:
    return [t for t in tools if not (t.get("type") == "mcp" and t.get("server_label") in labels)]
