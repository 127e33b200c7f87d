"""The bot's own tools on the Responses API (workspace search; OpenAI calls the MCP servers
itself): offered to a turn as function tools while it has calls left, run when a response
asks for them, and their outputs kept (with the turn's tools, in memory) until the response
carrying them exists."""

from __future__ import annotations

from typing import Any

from openai.types.responses import Response

from bot.assistants.tool_calls import RequestedCall, Toolbox, ToolCalls
from bot.assistants.turn_tools import TurnTools
from bot.tools.mcp_client import Catalog, McpTools


class ResponseFunctions:
    def __init__(self, functions: McpTools | None, max_tool_calls: int) -> None:
        self._functions = functions if functions is not None and functions.configured else None
        self._max_tool_calls = max_tool_calls

    async def offered(self, turn: TurnTools) -> list[dict[str, Any]]:
        """The bot's own tools the turn can use, as function tools (none past the cap)."""
        if self._functions is None or not turn.may_call(self._max_tool_calls):
            return []
        catalog = await self._functions.catalog(turn.context, servers=())
        return [
            {"type": "function", "strict": False, **spec.assistants_function()}
            for spec in catalog.tools
        ]

    @staticmethod
    def sent(turn: TurnTools, response_id: str) -> None:
        """The outputs for `response_id`'s calls are sent (or never will be): drop them."""
        turn.unsent_outputs.pop(response_id, None)

    async def asked(self, response: Response, turn: TurnTools) -> ToolCalls | None:
        """The calls of the bot's own tools `response` asked for, for the turn's tool loop;
        None when their outputs are kept from an earlier attempt whose continuation could
        not be created (OpenAI down). Each call therefore runs, and counts towards the
        turn's cap, once; the outputs are kept until the continuation exists."""
        if response.id in turn.unsent_outputs:
            return None
        catalog = Catalog()
        if self._functions is not None:
            catalog = await self._functions.catalog(turn.context, servers=())
        offered = {tool.name for tool in response.tools if tool.type == "function"}
        requested = tuple(
            RequestedCall(item.call_id, item.name, item.arguments)
            for item in response.output
            if item.type == "function_call"
        )
        return ToolCalls(
            requested, Toolbox(self._functions, catalog, self._max_tool_calls, offered)
        )

    @staticmethod
    def outputs(
        response: Response, turn: TurnTools, asked: ToolCalls | None
    ) -> list[dict[str, Any]]:
        """The function call outputs to send after `response` (one for every call, errors
        included: the model needs them all), kept until they are sent."""
        if asked is None:
            return list(turn.unsent_outputs[response.id])
        outputs = [
            {"type": "function_call_output", "call_id": call, "output": output}
            for call, output in asked.answered().items()
        ]
        turn.unsent_outputs[response.id] = outputs
        return list(outputs)
