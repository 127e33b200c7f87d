"""OpenAI's Responses API: a Conversation per Slack thread, a background response per turn."""

from __future__ import annotations

import base64
import dataclasses
import logging
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from typing import Any

import openai
from openai import AsyncOpenAI, omit
from openai.types.responses import Response

from bot.assistants.base import (
    NO_OPTIONS,
    ApprovalRequest,
    AssistantRejected,
    ProgressSink,
    RunCheck,
    RunState,
    StreamDelta,
    StreamEvent,
    StreamStarted,
    ToolProgress,
    ToolSource,
    ToolStatus,
    TurnOptions,
    Usage,
    UsageReport,
    chosen,
    joined_instructions,
    server_down,
)
from bot.assistants.errors import translated_errors
from bot.assistants.tool_calls import CallResult, RequestedCall, TurnTools, run_call
from bot.attachments import Image, image_data_url
from bot.text.citations import Source, with_sources
from bot.tools.config import McpServer
from bot.tools.mcp_client import Catalog, McpTools

log = logging.getLogger(__name__)

_STATES = {
    "queued": RunState.QUEUED,
    "in_progress": RunState.IN_PROGRESS,
    "completed": RunState.COMPLETED,
    "failed": RunState.FAILED,
    "incomplete": RunState.INCOMPLETE,
    "cancelled": RunState.CANCELLED,
}
_TERMINAL_EVENTS = {"response.completed", "response.failed", "response.incomplete"}
_MCP_DOWN = re.compile(r"Error retrieving tool list from MCP server: '([^']+)'")
_UNANSWERED = re.compile(r"No tool output found for function call ([A-Za-z0-9_-]+)")
INTERRUPTED_TEXT = "error: this tool call was interrupted; it has no result"
UNSENT_OUTPUTS_KEPT = 256
"""How many responses' tool outputs are kept, at most, while their continuation is not
created yet (the oldest go first: their turns have long ended, or their tools run again)."""
_HOSTED_TITLES = {
    "web_search_call": "Searching the web",
    "file_search_call": "Searching the files",
    "code_interpreter_call": "Running code",
    "image_generation_call": "Making an image",
}


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


class ResponsesBackend:
    name = "responses"

    def __init__(
        self,
        client: AsyncOpenAI,
        *,
        model: str,
        instructions: str | None = None,
        tools: list[dict[str, Any]] | None = None,
        mcp_servers: Sequence[McpServer] = (),
        functions: McpTools | None = None,
        max_tool_calls: int = 8,
    ) -> None:
        self._mcp_servers = list(mcp_servers)
        self._turns: dict[str, TurnTools] = {}
        """Turn key → its tool state: what its own tools act with, the calls they made, and
        the MCP servers its responses were sent without (named in its answer)."""
        self._functions = functions if functions is not None and functions.configured else None
        """Tools the bot runs itself (workspace search), offered as function tools."""
        self._max_tool_calls = max_tool_calls
        self._unsent = UnsentOutputs(UNSENT_OUTPUTS_KEPT)
        """Outputs of the bot's own tools whose continuation is not created yet."""
        self._client = client
        # Responses are started without the client's own retries: the service retries, and
        # looks for a response that a failed-looking request did start before starting another.
        self._once = client.with_options(max_retries=0)
        self._model = model
        self._instructions = instructions
        self._tools = tools or []

    async def create_thread(self, *, metadata: dict[str, str]) -> str:
        with translated_errors("create conversation"):
            conversation = await self._client.conversations.create(metadata=metadata)
        return str(conversation.id)

    async def start_run(
        self,
        *,
        thread_id: str,
        text: str,
        turn_key: str,
        images: Sequence[Image] = (),
        options: TurnOptions = NO_OPTIONS,
    ) -> str:
        self._remember(turn_key, options)
        args = await self._response_args(thread_id, text, turn_key, images, options)
        response, down = await self._create(args)
        self._left_out(turn_key, down)
        return str(response.id)

    def _left_out(self, turn_key: str, down: Sequence[str]) -> None:
        if down:
            self._turn(turn_key).left_out(down)

    def _turn(self, turn_key: str) -> TurnTools:
        return self._turns.setdefault(turn_key, TurnTools())

    async def _create(self, args: dict[str, Any], *, stream: bool = False) -> tuple[Any, list[str]]:
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
        calls = unanswered_calls(items, sending=_output_call_ids(args["input"]), named=named)
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

    def _remember(self, turn_key: str, options: TurnOptions) -> None:
        if options.tool_context is not None:
            self._turn(turn_key).context = options.tool_context

    async def resume_run(
        self,
        *,
        thread_id: str,
        run_id: str,
        turn_key: str,
        approval: ApprovalRequest,
        allowed: bool,
    ) -> str:
        """A new response on the conversation answering the `mcp_approval_request`, with
        the model, instructions and tools of the response that asked."""
        answer = {
            "type": "mcp_approval_response",
            "approval_request_id": approval.call_id,
            "approve": allowed,
        }
        with translated_errors("read the response that asked"):
            asking = await self._client.responses.retrieve(run_id)
        response, down = await self._create(await self._next_args(asking, [answer]))
        self._left_out(turn_key, down)
        return str(response.id)

    async def find_run(
        self, *, thread_id: str, turn_key: str, text: str, previous_run_id: str | None
    ) -> str | None:
        """A response whose id was lost (a failed-looking request, a crash), recognised by
        its input in the conversation.

        The Responses API cannot list a conversation's responses, but the conversation shows
        the input a response added. Only items after the previous turn's last item count, so
        a question asked twice ("continue") is never taken for the earlier one. The turn then
        waits for its answer to appear in the conversation, through a handle naming that
        input item.
        """
        after = await self._last_item_of(previous_run_id)
        with translated_errors("list conversation items"):
            page = await self._client.conversations.items.list(
                thread_id, order="asc", limit=100, after=after or omit
            )
        mine = [
            item
            for item in page.data
            if item.type == "message" and item.role == "user" and _item_text(item) == text
        ]
        return f"{_AFTER_ITEM}{mine[-1].id}" if mine else None

    async def _last_item_of(self, run_id: str | None) -> str | None:
        """The id of the last conversation item a turn's response (or handle) accounts for."""
        if run_id is None:
            return None
        if run_id.startswith(_AFTER_ITEM):
            return run_id.removeprefix(_AFTER_ITEM)
        with translated_errors("read previous response"):
            response = await self._client.responses.retrieve(run_id)
        return response.output[-1].id if response.output else None

    async def check_run(
        self, *, thread_id: str, run_id: str, progress: ProgressSink | None = None
    ) -> RunCheck:
        if run_id.startswith(_AFTER_ITEM):
            return await self._answer_after(thread_id, run_id.removeprefix(_AFTER_ITEM))
        with translated_errors("check response"):
            response = await self._client.responses.retrieve(run_id)
        running = [
            found
            for item in response.output
            if getattr(item, "status", "") == "in_progress"
            and (found := _hosted_progress(item, done=False)) is not None
        ]
        if running and progress is not None:
            await progress(running[-1])
        if _function_calls(response):
            return await self._answer_calls(thread_id, response, progress)
        return self._checked(response)

    async def _answer_calls(
        self, thread_id: str, response: Response, progress: ProgressSink | None
    ) -> RunCheck:
        """Run the function calls a finished response asked for and continue the turn with
        a response carrying their outputs. Outputs already in the conversation (a process
        that did this died before storing the next response) are not sent twice: the turn
        then waits for the answer after them."""
        answered = await self._answered_after(thread_id, response)
        if answered is not None:
            return RunCheck(RunState.IN_PROGRESS, continued_as=f"{_AFTER_ITEM}{answered}")
        outputs: list[dict[str, Any]] = []
        async for step in self._outputs_for(response, outputs):
            if progress is not None:
                await progress(step)
        following = await self._continue(response, outputs)
        return RunCheck(RunState.IN_PROGRESS, continued_as=following, usage=_usage(response))

    async def _continue(self, response: Response, outputs: list[dict[str, Any]]) -> str:
        """The response that gives the model its function calls' outputs."""
        following, down = await self._create(await self._next_args(response, outputs))
        self._unsent.drop(response.id)
        self._left_out(_turn_key_of(response), down)
        return str(following.id)

    async def _outputs_for(
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
        async for step in self._run_functions(response, outputs):
            yield step
        self._unsent.keep(response.id, outputs)

    async def _answered_after(self, thread_id: str, response: Response) -> str | None:
        """The last of this response's function call outputs, if the conversation has them."""
        if not response.output:
            return None
        wanted = {item.call_id for item in response.output if item.type == "function_call"}
        with translated_errors("list conversation items"):
            page = await self._client.conversations.items.list(
                thread_id, after=response.output[-1].id or omit, order="asc", limit=100
            )
        found = [
            item
            for item in page.data
            if item.type == "function_call_output" and item.call_id in wanted
        ]
        return str(found[-1].id) if found and len(found) == len(wanted) else None

    async def _run_functions(
        self, response: Response, outputs: list[dict[str, Any]]
    ) -> AsyncIterator[ToolProgress]:
        """Run the calls of the bot's own tools the response asked for, filling `outputs`
        (one for every call, errors included: the model needs them all), showing each."""
        turn = self._turn(_turn_key_of(response))
        catalog = Catalog()
        if self._functions is not None:
            catalog = await self._functions.catalog(turn.context, servers=())
        offered = {tool.name for tool in response.tools if tool.type == "function"}
        for call in response.output:
            if call.type != "function_call":
                continue
            steps = run_call(
                RequestedCall(call.call_id, call.name, call.arguments),
                turn=turn,
                catalog=catalog,
                tools=self._functions,
                max_calls=self._max_tool_calls,
                offered=offered,
            )
            async for step in steps:
                if not isinstance(step, CallResult):
                    yield step
                    continue
                output = {"type": "function_call_output", "call_id": call.call_id}
                outputs.append({**output, "output": step.output})

    def _checked(self, response: Response) -> RunCheck:
        check = _check(response)
        if not check.state.finished:
            return check
        if check.state is RunState.NEEDS_APPROVAL:
            return check  # the turn goes on: what it left out is named in its answer
        turn = self._turns.pop(_turn_key_of(response), None)
        if turn is None or not turn.unreachable:
            return check
        return dataclasses.replace(check, text=turn.noted(check.text))

    async def cancel_run(self, *, thread_id: str, run_id: str) -> Usage | None:
        self._unsent.drop(run_id)  # the turn ends: its outputs will not be sent
        if run_id.startswith(_AFTER_ITEM):
            return None
        try:
            with translated_errors("cancel response"):
                cancelled = await self._client.responses.cancel(run_id)
        except Exception:
            return None
        return _usage(cancelled)

    def forget(self, turn_key: str) -> None:
        self._turns.pop(turn_key, None)

    async def stream_run(
        self,
        *,
        thread_id: str,
        text: str,
        turn_key: str,
        images: Sequence[Image] = (),
        options: TurnOptions = NO_OPTIONS,
    ) -> AsyncIterator[StreamEvent]:
        """Create the background response and stream it in one request.

        Its first event names the response, which is handed over (and stored) before any
        waiting starts. A crash before that event arrives is covered by `find_run`, which
        recognises this turn's input in the conversation.
        """
        self._remember(turn_key, options)
        args = await self._response_args(thread_id, text, turn_key, images, options)
        stream, down = await self._create(args, stream=True)
        while stream is not None:
            current, stream = stream, None
            with translated_errors("stream response"):
                async for event in current:
                    if event.type == "response.created":
                        response_id = event.response.id
                        self._left_out(turn_key, down)
                        yield StreamStarted(response_id)
                        for label in down:
                            yield server_down(label)
                    elif event.type == "response.output_text.delta":
                        yield StreamDelta(event.delta)
                    elif event.type in ("response.output_item.added", "response.output_item.done"):
                        progress = _hosted_progress(event.item, done=event.type.endswith("done"))
                        if progress is not None:
                            yield progress
                    elif event.type in _TERMINAL_EVENTS:
                        response: Response = event.response  # type: ignore[union-attr]
                        if not _function_calls(response):
                            yield self._checked(response)
                            return
                        # The model asked for the bot's own tools: run them, then stream
                        # the response that carries their outputs.
                        used = _usage(response)
                        if used is not None:
                            yield UsageReport(used)
                        outputs: list[dict[str, Any]] = []
                        async for step in self._outputs_for(response, outputs):
                            yield step
                        args = await self._next_args(response, outputs)
                        stream, down = await self._create(args, stream=True)
                        self._unsent.drop(response.id)
                        break

    async def produced_files(self, *, thread_id: str, run_id: str) -> list[Image]:
        if run_id.startswith(_AFTER_ITEM):
            return []
        with translated_errors("read produced files"):
            response = await self._client.responses.retrieve(run_id)
        results = [
            item.result
            for item in response.output
            if item.type == "image_generation_call" and item.result
        ]
        return [
            Image(f"image-{number}.png", "image/png", base64.b64decode(result))
            for number, result in enumerate(results, start=1)
        ]

    async def _answer_after(self, conversation_id: str, item_id: str) -> RunCheck:
        with translated_errors("list conversation items"):
            page = await self._client.conversations.items.list(
                conversation_id, after=item_id, order="asc", limit=20
            )
        answers = [
            _item_text(item)
            for item in page.data
            if item.type == "message" and item.role == "assistant"
        ]
        if not answers:
            return RunCheck(RunState.IN_PROGRESS)
        return RunCheck(RunState.COMPLETED, text="\n\n".join(answers))

    async def delete_thread(self, thread_id: str) -> None:
        """Delete it at OpenAI; already gone counts as deleted; else an `AssistantError`."""
        try:
            with translated_errors("delete conversation"):
                await self._client.conversations.delete(thread_id)
        except AssistantRejected as exc:
            if not isinstance(exc.__cause__, openai.NotFoundError):
                raise

    async def close(self) -> None:
        await self._client.close()

    async def _response_args(
        self,
        conversation_id: str,
        text: str,
        turn_key: str,
        images: Sequence[Image],
        options: TurnOptions,
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
        )

    async def _next_args(
        self, response: Response, input_items: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """A response that carries a turn on (tool outputs, an approval) after `response`:
        the same model, instructions and MCP servers as it had, read from it, so this holds
        after a restart too."""
        if response.conversation is None:
            raise AssistantRejected("the response to carry on has no conversation")
        instructions = response.instructions if isinstance(response.instructions, str) else None
        return await self._args(
            conversation_id=response.conversation.id,
            turn_key=_turn_key_of(response),
            input_items=input_items,
            model=str(response.model),
            instructions=instructions,
            servers=[tool.server_label for tool in response.tools if tool.type == "mcp"],
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
        tools = self._tools + [mcp_tool(s) for s in self._mcp_servers if s.label in used]
        tools += await self._function_tools(turn_key)
        if tools:
            args["tools"] = tools
        return args

    async def _function_tools(self, turn_key: str) -> list[dict[str, Any]]:
        """The bot's own tools the turn can use, as function tools (none past the cap)."""
        turn = self._turns.get(turn_key, TurnTools())
        if self._functions is None or not turn.may_call(self._max_tool_calls):
            return []
        catalog = await self._functions.catalog(turn.context, servers=())
        return [
            {"type": "function", "strict": False, **spec.assistants_function()}
            for spec in catalog.tools
        ]


_AFTER_ITEM = "after-item:"


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


def _without_servers(tools: list[dict[str, Any]], labels: Sequence[str]) -> list[dict[str, Any]]:
    return [t for t in tools if not (t.get("type") == "mcp" and t.get("server_label") in labels)]


def unanswered_calls(
    items: Sequence[tuple[str, str]], *, sending: Sequence[str], named: str
) -> list[str]:
    """The call ids of the function calls among a conversation's items (type, call id; oldest
    first) that no output answers, neither there nor in the input being sent, oldest first.
    The call the API named is among them even when it is older than the items read."""
    answered = {call for kind, call in items if kind == "function_call_output"} | set(sending)
    calls = [call for kind, call in items if kind == "function_call" and call not in answered]
    if named not in answered and named not in calls:
        calls.insert(0, named)
    return list(dict.fromkeys(calls))


def _output_call_ids(input_items: Sequence[dict[str, Any]]) -> list[str]:
    return [
        str(item.get("call_id"))
        for item in input_items
        if item.get("type") == "function_call_output"
    ]


def _function_calls(response: Response) -> bool:
    """The response ended asking for function calls (the bot's own tools) instead of an
    answer."""
    return response.status == "completed" and any(
        item.type == "function_call" for item in response.output
    )


def _turn_key_of(response: Response) -> str:
    return str((response.metadata or {}).get("turn_key") or "")


def _hosted_progress(item: Any, *, done: bool) -> ToolProgress | None:
    """A hosted tool call (web or file search, MCP) as a task update."""
    kind = getattr(item, "type", "")
    if kind == "mcp_approval_request":
        title = f"{item.name} ({item.server_label}) waits for your approval"
        return ToolProgress(str(item.id), title, ToolStatus.PENDING)
    if kind == "mcp_call":
        title = f"{item.name} ({item.server_label})"
    elif kind in _HOSTED_TITLES:
        title = _HOSTED_TITLES[kind]
    else:
        return None
    failed = bool(getattr(item, "error", None)) or getattr(item, "status", "") == "failed"
    status = ToolStatus.IN_PROGRESS
    if done:
        status = ToolStatus.ERROR if failed else ToolStatus.COMPLETE
    sources: tuple[ToolSource, ...] = ()
    action = getattr(item, "action", None)
    if done and action is not None and getattr(action, "sources", None):
        sources = tuple(
            ToolSource(url=source.url, title=source.url)
            for source in action.sources
            if getattr(source, "url", None)
        )[:5]
    return ToolProgress(str(item.id), title, status, sources)


def _item_text(item: Any) -> str:
    """The text of a conversation message item (input_text or output_text parts)."""
    return "".join(
        getattr(part, "text", "") or ""
        for part in item.content
        if getattr(part, "type", "") in {"input_text", "output_text"}
    )


def _check(response: Response) -> RunCheck:
    state = _STATES.get(response.status or "in_progress", RunState.IN_PROGRESS)
    if not state.finished:
        return RunCheck(state)
    asked = [item for item in response.output if item.type == "mcp_approval_request"]
    if state is RunState.COMPLETED and asked and not response.output_text:
        item = asked[0]
        request = ApprovalRequest(item.id, item.server_label, item.name, item.arguments)
        return RunCheck(RunState.NEEDS_APPROVAL, approval=request, usage=_usage(response))
    detail = response.error.message if response.error else None
    if response.incomplete_details is not None:
        detail = response.incomplete_details.reason
    text = with_sources(response.output_text, _sources(response))
    images = sum(item.type == "image_generation_call" for item in response.output)
    return RunCheck(state, text=text, detail=detail, produced_files=images, usage=_usage(response))


def _usage(response: Response) -> Usage | None:
    usage = response.usage
    if usage is None:
        return None
    cached = usage.input_tokens_details.cached_tokens if usage.input_tokens_details else 0
    reasoning = usage.output_tokens_details.reasoning_tokens if usage.output_tokens_details else 0
    return Usage(
        model=str(response.model),
        input_tokens=usage.input_tokens,
        cached_input_tokens=cached or 0,
        output_tokens=usage.output_tokens,
        reasoning_tokens=reasoning or 0,
    )


def _sources(response: Response) -> list[Source]:
    sources: list[Source] = []
    for item in response.output:
        if item.type != "message":
            continue
        for part in item.content:
            if part.type != "output_text":
                continue
            for note in part.annotations:
                if note.type == "url_citation":
                    sources.append(Source(title=note.title or note.url, url=note.url))
                elif note.type == "file_citation":
                    sources.append(Source(title=note.filename))
    return sources
