"""The bot's own tools on the Responses API (workspace search; OpenAI calls the MCP servers
itself): offered to a turn as function tools while it has calls left, run when a response
asks for them, and their outputs kept until the response carrying them exists."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from typing import Any

from openai.types.responses import Response

from bot.assistants.base import ToolProgress
from bot.assistants.responses_items import turn_key_of
from bot.assistants.tool_calls import CallResult, RequestedCall, Toolbox, TurnTools, run_calls
from bot.tools.mcp_client import Catalog, McpTools

UNSENT_OUTPUTS_KEPT = 256
"""How many responses' tool outputs are kept, at most, while their continuation is not
created yet (the oldest go first: their turns have long ended, or their tools run again)."""


class ResponseFunctions:
    """`turns` is the backend's per-turn tool state (shared: the backend drops a turn's)."""

    def __init__(
        self, functions: McpTools | None, max_tool_calls: int, turns: dict[str, TurnTools]
    ) -> None:
        self._functions = functions if functions is not None and functions.configured else None
        self._max_tool_calls = max_tool_calls
        self._turns = turns
        self._unsent = UnsentOutputs(UNSENT_OUTPUTS_KEPT)
        """Outputs of the bot's own tools whose continuation is not created yet."""

    async def offered(self, turn_key: str) -> list[dict[str, Any]]:
        """The bot's own tools the turn can use, as function tools (none past the cap)."""
        turn = self._turns.get(turn_key, TurnTools())
        if self._functions is None or not turn.may_call(self._max_tool_calls):
            return []
        catalog = await self._functions.catalog(turn.context, servers=())
        return [
            {"type": "function", "strict": False, **spec.assistants_function()}
            for spec in catalog.tools
        ]

    def sent(self, response_id: str) -> None:
        """The outputs for `response_id`'s calls are sent (or never will be): drop them."""
        self._unsent.drop(response_id)

    async def outputs_for(
        self, response: Response, outputs: list[dict[str, Any]]
    ) -> AsyncIterator[ToolProgress]:
        """Fill `outputs` for the function calls `response` asked for: the ones kept from an
        earlier attempt whose continuation could not be created (OpenAI down), else by running
        the calls. Each call therefore runs, and counts towards the turn's cap, once; the
        outputs are kept until the continuation exists."""
        kept = self._unsent.get(response.id)
        if kept is not None:
            outputs.extend(kept)
            return
        async for step in self._run(response, outputs):
            yield step
        self._unsent.keep(response.id, outputs)

    async def _run(
        self, response: Response, outputs: list[dict[str, Any]]
    ) -> AsyncIterator[ToolProgress]:
        """Run the calls of the bot's own tools the response asked for, filling `outputs`
        (one for every call, errors included: the model needs them all), showing each."""
        turn = self._turns.setdefault(turn_key_of(response), TurnTools())
        catalog = Catalog()
        if self._functions is not None:
            catalog = await self._functions.catalog(turn.context, servers=())
        offered = {tool.name for tool in response.tools if tool.type == "function"}
        requested = [
            RequestedCall(item.call_id, item.name, item.arguments)
            for item in response.output
            if item.type == "function_call"
        ]
        box = Toolbox(self._functions, catalog, self._max_tool_calls, offered)
        async for step in run_calls(requested, turn, box):
            if isinstance(step, CallResult):
                output = {"type": "function_call_output", "call_id": step.call.id}
                outputs.append({**output, "output": step.output})
            else:
                yield step


class UnsentOutputs:
    """Function call outputs per response that asked for them, kept in memory until the
    response carrying them exists, at most `limit` responses' worth (the oldest go first).

    Losing them (a restart, an evicted entry) costs only running the tools again."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._kept: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()

    def keep(self, response_id: str, outputs: Sequence[dict[str, Any]]) -> None:
        self._kept[response_id] = list(outputs)
        self._kept.move_to_end(response_id)
        while len(self._kept) > self._limit:
            self._kept.popitem(last=False)

    def get(self, response_id: str) -> list[dict[str, Any]] | None:
        kept = self._kept.get(response_id)
        return list(kept) if kept is not None else None

    def drop(self, response_id: str) -> None:
        self._kept.pop(response_id, None)

    def __len__(self) -> int:
        return len(self._kept)
