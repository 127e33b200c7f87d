"""OpenAI's Responses API: a Conversation per Slack thread, a background response per turn."""

from __future__ import annotations

import base64
import dataclasses
import logging
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from openai import AsyncOpenAI, omit
from openai.types.responses import Response

from bot.assistants.base import (
    CheckEvent,
    Resume,
    RunCheck,
    RunLookup,
    RunResponder,
    RunState,
    StreamDelta,
    StreamEvent,
    StreamStarted,
    TurnRequest,
    Usage,
    UsageReport,
    server_down,
)
from bot.assistants.errors import gone_is_done, translated_errors
from bot.assistants.responses_functions import ResponseFunctions
from bot.assistants.responses_items import (
    function_calls,
    hosted_progress,
    item_text,
    response_check,
    response_usage,
)
from bot.assistants.responses_requests import ResponseRequests
from bot.assistants.tool_calls import ToolCalls
from bot.assistants.turn_tools import TurnTools
from bot.attachments import Image
from bot.tools.config import McpServer
from bot.tools.mcp_client import McpTools

log = logging.getLogger(__name__)

_TERMINAL_EVENTS = {"response.completed", "response.failed", "response.incomplete"}


class ResponsesBackend(RunResponder):
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
        self._functions = ResponseFunctions(functions, max_tool_calls)
        self._client = client
        self._requests = ResponseRequests(
            client,
            model=model,
            instructions=instructions,
            hosted_tools=tools or [],
            mcp_servers=mcp_servers,
            functions=self._functions,
        )

    async def create_thread(self, *, metadata: dict[str, str]) -> str:
        with translated_errors("create conversation"):
            conversation = await self._client.conversations.create(metadata=metadata)
        return str(conversation.id)

    async def _start_run(self, request: TurnRequest, tools: TurnTools) -> str:
        thread_id, text, turn_key = request.thread_id, request.text, request.turn_key
        images, options = request.images, request.options
        args = await self._requests.first(thread_id, text, turn_key, images, options, tools)
        response, down = await self._requests.create(args)
        tools.left_out(down)
        return str(response.id)

    async def _resume_run(self, resume: Resume, tools: TurnTools) -> str:
        """A new response on the conversation answering the `mcp_approval_request`, with
        the model, instructions and tools of the response that asked."""
        answer = {
            "type": "mcp_approval_response",
            "approval_request_id": resume.approval.call_id,
            "approve": resume.allowed,
        }
        with translated_errors("read the response that asked"):
            asking = await self._client.responses.retrieve(resume.run_id)
        response, down = await self._requests.create(
            await self._requests.following(asking, [answer], tools)
        )
        tools.left_out(down)
        return str(response.id)

    async def find_run(self, lookup: RunLookup, tools: TurnTools) -> str | None:
        """A response whose id was lost (a failed-looking request, a crash), recognised by
        its input in the conversation.

        The Responses API cannot list a conversation's responses, but the conversation shows
        the input a response added. Only items after the previous turn's last item count, so
        a question asked twice ("continue") is never taken for the earlier one. The turn then
        waits for its answer to appear in the conversation, through a handle naming that
        input item.
        """
        after = await self._last_item_of(lookup.previous_run_id)
        with translated_errors("list conversation items"):
            page = await self._client.conversations.items.list(
                lookup.thread_id, order="asc", limit=100, after=after or omit
            )
        mine = [
            item
            for item in page.data
            if item.type == "message" and item.role == "user" and item_text(item) == lookup.text
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
        self, *, thread_id: str, run_id: str, tools: TurnTools
    ) -> AsyncGenerator[CheckEvent | ToolCalls, None]:
        if run_id.startswith(_AFTER_ITEM):
            yield await self._answer_after(thread_id, run_id.removeprefix(_AFTER_ITEM))
            return
        with translated_errors("check response"):
            response = await self._client.responses.retrieve(run_id)
        running = [
            found
            for item in response.output
            if getattr(item, "status", "") == "in_progress"
            and (found := hosted_progress(item, done=False)) is not None
        ]
        if running:
            yield running[-1]
        if function_calls(response):
            async for event in self._answer_calls(thread_id, response, tools):
                yield event
            return
        yield self._checked(response, tools)

    async def _answer_calls(
        self, thread_id: str, response: Response, tools: TurnTools
    ) -> AsyncGenerator[CheckEvent | ToolCalls, None]:
        """Run the function calls a finished response asked for and continue the turn with
        a response carrying their outputs. Outputs already in the conversation (a process
        that did this died before storing the next response) are not sent twice: the turn
        then waits for the answer after them."""
        answered = await self._answered_after(thread_id, response)
        if answered is not None:
            yield RunCheck(RunState.IN_PROGRESS, continued_as=f"{_AFTER_ITEM}{answered}")
            return
        asked = await self._functions.asked(response, tools)
        if asked is not None:
            yield asked
        outputs = self._functions.outputs(response, tools, asked)
        following = await self._continue(response, outputs, tools)
        yield RunCheck(RunState.IN_PROGRESS, continued_as=following, usage=response_usage(response))

    async def _continue(
        self, response: Response, outputs: list[dict[str, Any]], tools: TurnTools
    ) -> str:
        """The response that gives the model its function calls' outputs."""
        following, down = await self._requests.create(
            await self._requests.following(response, outputs, tools)
        )
        self._functions.sent(tools, response.id)
        tools.left_out(down)
        return str(following.id)

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

    @staticmethod
    def _checked(response: Response, tools: TurnTools) -> RunCheck:
        check = response_check(response)
        if not check.state.finished:
            return check
        if check.state is RunState.NEEDS_APPROVAL:
            return check  # the turn goes on: what it left out is named in its answer
        if not tools.unreachable:
            return check
        return dataclasses.replace(check, text=tools.noted(check.text))

    async def cancel_run(self, *, thread_id: str, run_id: str) -> Usage | None:
        if run_id.startswith(_AFTER_ITEM):
            return None
        try:
            with translated_errors("cancel response"):
                cancelled = await self._client.responses.cancel(run_id)
        except Exception:
            return None
        return response_usage(cancelled)

    async def _stream_run(
        self, request: TurnRequest, tools: TurnTools
    ) -> AsyncGenerator[StreamEvent | ToolCalls, None]:
        """Create the background response and stream it in one request.

        Its first event names the response, which is handed over (and stored) before any
        waiting starts. A crash before that event arrives is covered by `find_run`, which
        recognises this turn's input in the conversation.
        """
        thread_id, text, turn_key = request.thread_id, request.text, request.turn_key
        images, options = request.images, request.options
        args = await self._requests.first(thread_id, text, turn_key, images, options, tools)
        stream, down = await self._requests.create(args, stream=True)
        while stream is not None:
            current, stream = stream, None
            with translated_errors("stream response"):
                async for event in current:
                    if event.type == "response.created":
                        response_id = event.response.id
                        tools.left_out(down)
                        yield StreamStarted(response_id)
                        for label in down:
                            yield server_down(label)
                    elif event.type == "response.output_text.delta":
                        yield StreamDelta(event.delta)
                    elif event.type in ("response.output_item.added", "response.output_item.done"):
                        progress = hosted_progress(event.item, done=event.type.endswith("done"))
                        if progress is not None:
                            yield progress
                    elif event.type in _TERMINAL_EVENTS:
                        response: Response = event.response  # type: ignore[union-attr]
                        if not function_calls(response):
                            yield self._checked(response, tools)
                            return
                        # The model asked for the bot's own tools: run them, then stream
                        # the response that carries their outputs.
                        used = response_usage(response)
                        if used is not None:
                            yield UsageReport(used)
                        asked = await self._functions.asked(response, tools)
                        if asked is not None:
                            yield asked
                        outputs = self._functions.outputs(response, tools, asked)
                        args = await self._requests.following(response, outputs, tools)
                        stream, down = await self._requests.create(args, stream=True)
                        self._functions.sent(tools, response.id)
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
            item_text(item)
            for item in page.data
            if item.type == "message" and item.role == "assistant"
        ]
        if not answers:
            return RunCheck(RunState.IN_PROGRESS)
        return RunCheck(RunState.COMPLETED, text="\n\n".join(answers))

    async def delete_thread(self, thread_id: str) -> None:
        """Delete it at OpenAI; already gone counts as deleted; else an `AssistantError`."""
        with gone_is_done("delete conversation"):
            await self._client.conversations.delete(thread_id)

    async def close(self) -> None:
        await self._client.close()


_AFTER_ITEM = "after-item:"
