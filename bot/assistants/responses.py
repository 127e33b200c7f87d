"""OpenAI's Responses API: a Conversation per Slack thread, a background response per turn."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

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
    joined_instructions,
)
from bot.assistants.errors import translated_errors
from bot.attachments import Image, image_data_url
from bot.text import Source, with_sources
from bot.tools.config import McpServer

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
    ) -> None:
        self._mcp_servers = list(mcp_servers)
        self._unreachable: dict[str, list[str]] = {}
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
        down: list[str] = []
        while True:
            args = self._response_args(thread_id, text, turn_key, images, options, skip=down)
            try:
                with translated_errors("create response"):
                    response = await self._once.responses.create(background=True, **args)
            except AssistantRejected as exc:
                # An MCP server OpenAI cannot list fails the whole request: go without it
                # (the user is told which), rather than without an answer.
                found = _MCP_DOWN.search(str(exc))
                if found is None or found.group(1) in down:
                    raise
                down.append(found.group(1))
                continue
            if down:
                self._unreachable[response.id] = down
            return str(response.id)

    async def resume_run(
        self,
        *,
        thread_id: str,
        run_id: str,
        turn_key: str,
        approval: ApprovalRequest,
        allowed: bool,
    ) -> str:
        """A new response on the conversation answering the `mcp_approval_request`."""
        answer = {
            "type": "mcp_approval_response",
            "approval_request_id": approval.call_id,
            "approve": allowed,
        }
        args = self._response_args(thread_id, "", turn_key, (), NO_OPTIONS, input_items=[answer])
        with translated_errors("answer approval request"):
            response = await self._once.responses.create(background=True, **args)
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
        return self._checked(response)

    def _checked(self, response: Response) -> RunCheck:
        check = _check(response)
        if not check.state.finished:
            return check
        notes = [
            f"_The tool server `{label}` could not be reached; I answered without it._"
            for label in self._unreachable.pop(response.id, [])
        ]
        if not notes:
            return check
        return RunCheck(
            check.state,
            text="\n\n".join([*notes, check.text]),
            detail=check.detail,
            produced_files=check.produced_files,
            usage=check.usage,
        )

    async def cancel_run(self, *, thread_id: str, run_id: str) -> None:
        if run_id.startswith(_AFTER_ITEM):
            return
        try:
            with translated_errors("cancel response"):
                await self._client.responses.cancel(run_id)
        except Exception:
            return

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
        down: list[str] = []
        while True:
            args = self._response_args(thread_id, text, turn_key, images, options, skip=down)
            try:
                with translated_errors("stream response"):
                    stream = await self._once.responses.create(background=True, stream=True, **args)
            except AssistantRejected as exc:
                # As in start_run: go without an MCP server OpenAI cannot list.
                found = _MCP_DOWN.search(str(exc))
                if found is None or found.group(1) in down:
                    raise
                down.append(found.group(1))
                continue
            break
        with translated_errors("stream response"):
            async for event in stream:
                if event.type == "response.created":
                    response_id = event.response.id
                    if down:
                        self._unreachable[response_id] = down
                    yield StreamStarted(response_id)
                    for label in down:
                        yield ToolProgress(f"server-{label}", _down(label), ToolStatus.ERROR)
                elif event.type == "response.output_text.delta":
                    yield StreamDelta(event.delta)
                elif event.type in ("response.output_item.added", "response.output_item.done"):
                    progress = _hosted_progress(event.item, done=event.type.endswith("done"))
                    if progress is not None:
                        yield progress
                elif event.type in _TERMINAL_EVENTS:
                    yield self._checked(event.response)  # type: ignore[union-attr]
                    return

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
        try:
            with translated_errors("delete conversation"):
                await self._client.conversations.delete(thread_id)
        except Exception:
            return

    async def close(self) -> None:
        await self._client.close()

    def _response_args(
        self,
        conversation_id: str,
        text: str,
        turn_key: str,
        images: Sequence[Image],
        options: TurnOptions,
        skip: Sequence[str] = (),
        input_items: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        content: str | list[dict[str, Any]] = text
        if images:
            content = [{"type": "input_text", "text": text}] + [
                {"type": "input_image", "image_url": image_data_url(image)} for image in images
            ]
        args: dict[str, Any] = {
            "model": options.model or self._model,
            "conversation": conversation_id,
            "input": input_items or [{"role": "user", "content": content}],
            "store": True,
            "metadata": {"turn_key": turn_key},
            # A Conversation grows with every turn; "auto" drops its oldest items when it no
            # longer fits the model's window, where "disabled" (the default) fails the turn.
            "truncation": "auto",
        }
        instructions = joined_instructions(self._instructions, options.instructions)
        if instructions:
            args["instructions"] = instructions
        tools = self._tools + [
            mcp_tool(server) for server in self._mcp_servers if server.label not in skip
        ]
        if tools:
            args["tools"] = tools
        return args


_AFTER_ITEM = "after-item:"


def _down(label: str) -> str:
    return f"The tool server `{label}` could not be reached"


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
