"""OpenAI's Assistants API: a thread per Slack thread, a run per turn.

OpenAI shut this API down on 2026-08-26; it stays for Assistants-compatible servers and
deployments that still point at one.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Sequence
from typing import TYPE_CHECKING, Any

from openai import AsyncOpenAI

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
    ToolContext,
    TurnOptions,
    TurnRequest,
    Usage,
    joined_instructions,
    server_down,
)
from bot.assistants.errors import gone_is_done, translated_errors
from bot.assistants.threads_items import answer_of, run_usage, truncation_strategy
from bot.assistants.tool_calls import RequestedCall, Toolbox, ToolCalls
from bot.assistants.turn_tools import TurnTools
from bot.attachments import Image
from bot.tools.mcp_client import Catalog, McpTools

if TYPE_CHECKING:
    # the beta types package is large (about 12 MiB, 500 modules); only annotations use it
    from openai.types.beta.threads import Message, Run

_STATES = {state.value: state for state in RunState}
_TERMINAL_EVENTS = {
    "thread.run.completed",
    "thread.run.failed",
    "thread.run.cancelled",
    "thread.run.expired",
    "thread.run.incomplete",
    "thread.run.requires_action",
}


class ThreadsBackend(RunResponder):
    name = "threads"

    def __init__(
        self,
        client: AsyncOpenAI,
        *,
        assistant_id: str,
        instructions: str | None = None,
        context_tokens: int | None = None,
        tools: McpTools | None = None,
        max_tool_calls: int = 8,
    ) -> None:
        self._tools = tools if tools is not None and tools.configured else None
        self._max_tool_calls = max_tool_calls
        self._assistant_tools: list[dict[str, Any]] | None = None
        self._client = client
        self._truncation = truncation_strategy(context_tokens)
        # Runs are started without the client's own retries: the service retries, and looks
        # for a run that a failed-looking request did start before starting another.
        self._once = client.with_options(max_retries=0)
        self._assistant_id = assistant_id
        self._instructions = instructions

    async def create_thread(self, *, metadata: dict[str, str]) -> str:
        with translated_errors("create thread"):
            thread = await self._client.beta.threads.create(metadata=metadata)
        return str(thread.id)

    async def _start_run(self, request: TurnRequest, tools: TurnTools) -> str:
        thread_id, text, turn_key = request.thread_id, request.text, request.turn_key
        images, options = request.images, request.options
        args, catalog = await self._run_args(text, turn_key, images, options, tools)
        with translated_errors("start run"):
            run = await self._once.beta.threads.runs.create(thread_id, **args)
        tools.left_out(catalog.unreachable)
        return str(run.id)

    async def find_run(self, lookup: RunLookup, tools: TurnTools) -> str | None:
        with translated_errors("list runs"):
            page = await self._client.beta.threads.runs.list(
                lookup.thread_id, limit=20, order="desc"
            )
        for run in page.data:
            if (run.metadata or {}).get("turn_key") == lookup.turn_key:  # type: ignore[union-attr]
                return run.id
        return None

    async def check_run(
        self, *, thread_id: str, run_id: str, tools: TurnTools
    ) -> AsyncGenerator[CheckEvent | ToolCalls, None]:
        with translated_errors("check run"):
            run = await self._client.beta.threads.runs.retrieve(run_id, thread_id=thread_id)
        if run.status == "requires_action" and self._tools is not None:
            asked = await self._asked(run, tools)
            yield asked
            with translated_errors("submit tool outputs"):
                await self._client.beta.threads.runs.submit_tool_outputs(
                    run_id, thread_id=thread_id, tool_outputs=_tool_outputs(asked)
                )
            yield RunCheck(RunState.IN_PROGRESS)
            return
        state = _STATES.get(run.status, RunState.IN_PROGRESS)
        if state in (RunState.QUEUED, RunState.IN_PROGRESS) or run.status == "cancelling":
            yield RunCheck(RunState.IN_PROGRESS if run.status == "cancelling" else state)
            return
        messages: list[Message] = []
        if state in (RunState.COMPLETED, RunState.INCOMPLETE):
            messages = await self._run_messages(thread_id, run_id)
        yield self._finished(run, messages, tools)

    def _finished(self, run: Run, messages: Sequence[Message], tools: TurnTools) -> RunCheck:
        """A run that ended, with the messages it wrote: the answer, or why there is none."""
        state = _STATES.get(run.status, RunState.FAILED)
        detail = run.last_error.message if run.last_error else None
        if run.incomplete_details is not None:
            detail = run.incomplete_details.reason
        text, files = "", 0
        if state in (RunState.COMPLETED, RunState.INCOMPLETE):
            text, files = answer_of(messages)
            text = tools.noted(text)
        usage = run_usage(run)
        return RunCheck(state, text=text, detail=detail, produced_files=files, usage=usage)

    async def cancel_run(self, *, thread_id: str, run_id: str) -> Usage | None:
        try:
            with translated_errors("cancel run"):
                run = await self._client.beta.threads.runs.cancel(run_id, thread_id=thread_id)
        except Exception:
            return None
        return run_usage(run)

    async def _stream_run(
        self, request: TurnRequest, tools: TurnTools
    ) -> AsyncGenerator[StreamEvent | ToolCalls, None]:
        thread_id, text, turn_key = request.thread_id, request.text, request.turn_key
        images, options = request.images, request.options
        args, catalog = await self._run_args(text, turn_key, images, options, tools)
        for label in sorted(catalog.unreachable):
            yield server_down(label)
        written: list[Message] = []
        with translated_errors("stream run"):
            stream: Any = await self._once.beta.threads.runs.create(thread_id, stream=True, **args)
            while stream is not None:
                current, stream = stream, None
                async for event in current:
                    if event.event == "thread.run.created":
                        tools.left_out(catalog.unreachable)
                        yield StreamStarted(event.data.id)
                    elif event.event == "thread.message.delta":
                        for part in event.data.delta.content or []:
                            if part.type == "text" and part.text is not None and part.text.value:
                                yield StreamDelta(part.text.value)
                    elif event.event == "thread.run.requires_action" and self._tools is not None:
                        asked = await self._asked(event.data, tools)
                        await current.close()  # the run waits for the outputs
                        yield asked
                        stream = await self._client.beta.threads.runs.submit_tool_outputs(
                            event.data.id,
                            thread_id=thread_id,
                            tool_outputs=_tool_outputs(asked),
                            stream=True,
                        )
                        break
                    elif event.event in ("thread.message.completed", "thread.message.incomplete"):
                        written.append(event.data)
                    elif event.event in _TERMINAL_EVENTS:
                        # the stream carried the run and its messages: nothing to read back
                        yield self._finished(event.data, written, tools)
                        return
                await current.close()

    async def produced_files(self, *, thread_id: str, run_id: str) -> list[Image]:
        with translated_errors("read produced files"):
            page = await self._client.beta.threads.messages.list(
                thread_id, run_id=run_id, order="asc", limit=100
            )
            file_ids = [
                block.image_file.file_id
                for message in page.data
                if message.role == "assistant"
                for block in message.content
                if block.type == "image_file"
            ]
            images = []
            for number, file_id in enumerate(file_ids, start=1):
                content = await self._client.files.content(file_id)
                images.append(Image(f"image-{number}.png", "image/png", content.content))
        return images

    async def delete_thread(self, thread_id: str) -> None:
        """Delete it at OpenAI; already gone counts as deleted; else an `AssistantError`."""
        with gone_is_done("delete thread"):
            await self._client.beta.threads.delete(thread_id)

    async def close(self) -> None:
        await self._client.close()

    async def _resume_run(self, resume: Resume, tools: TurnTools) -> str:
        """The run still waits (requires_action): the next check runs its calls with this
        decision and the outputs found before it asked (kept with the turn's tools; a
        request stored before that carries them in its state)."""
        state = json.loads(resume.approval.state or "{}")
        tools.known_outputs.update(state.get("outputs") or {})
        tools.decisions[resume.approval.call_id] = resume.allowed
        return resume.run_id

    async def _asked(self, run: Any, turn: TurnTools) -> ToolCalls:
        """The function calls a `requires_action` run waits for, for the turn's tool loop:
        every call gets an output, errors included (the run needs one for each)."""
        assert self._tools is not None
        action = run.required_action
        calls = action.submit_tool_outputs.tool_calls if action is not None else []
        catalog = Catalog()
        if calls:
            catalog = await self._tools.catalog(turn.context, turn.servers)
        # Only what the run was offered runs (its `tools`, which survive a restart).
        offered = {t.function.name for t in run.tools or [] if t.type == "function"}
        requested = [RequestedCall(c.id, c.function.name, c.function.arguments) for c in calls]
        box = Toolbox(self._tools, catalog, self._max_tool_calls, offered)
        return ToolCalls(tuple(requested), box)

    async def _offered_tools(
        self, context: ToolContext | None, servers: Sequence[str] | None
    ) -> tuple[dict[str, Any], Catalog]:
        """The run's `tools`: the assistant's own, and the MCP servers' tools as functions
        (a run's `tools` replaces the assistant's, so they are listed again)."""
        if self._tools is None:
            return {}, Catalog()
        catalog = await self._tools.catalog(context, servers)
        if not catalog.tools:
            return {}, catalog
        if self._assistant_tools is None:
            with translated_errors("read assistant"):
                assistant = await self._client.beta.assistants.retrieve(self._assistant_id)
            self._assistant_tools = [
                tool.model_dump(exclude_none=True)
                for tool in assistant.tools
                if tool.type != "function"
            ]
        functions = [
            {"type": "function", "function": t.assistants_function()} for t in catalog.tools
        ]
        return {"tools": [*self._assistant_tools, *functions]}, catalog

    async def _run_args(
        self,
        text: str,
        turn_key: str,
        images: Sequence[Image],
        options: TurnOptions,
        tools: TurnTools,
    ) -> tuple[dict[str, Any], Catalog]:
        content: str | list[dict[str, Any]] = text
        if images:
            content = [{"type": "text", "text": text}]
            for image in images:
                file_id = await self._upload_image(image)
                content.append({"type": "image_file", "image_file": {"file_id": file_id}})
        args: dict[str, Any] = {
            "assistant_id": self._assistant_id,
            "additional_messages": [{"role": "user", "content": content}],
            "metadata": {"turn_key": turn_key},
        }
        instructions = joined_instructions(self._instructions, options.instructions)
        if instructions:
            args["additional_instructions"] = instructions
        if options.model:
            args["model"] = options.model
        if self._truncation is not None:
            args["truncation_strategy"] = self._truncation
        offered, catalog = await self._offered_tools(tools.context, tools.servers)
        return {**args, **offered}, catalog

    async def _upload_image(self, image: Image) -> str:
        """The Assistants API takes images as uploaded files (purpose "vision")."""
        with translated_errors("upload image"):
            uploaded = await self._client.files.create(
                file=(image.name, image.data, image.mimetype), purpose="vision"
            )
        return str(uploaded.id)

    async def _run_messages(self, thread_id: str, run_id: str) -> list[Message]:
        with translated_errors("read answer"):
            page = await self._client.beta.threads.messages.list(
                thread_id, run_id=run_id, order="asc", limit=100
            )
        return list(page.data)


def _tool_outputs(asked: ToolCalls) -> Any:
    return [{"tool_call_id": call, "output": output} for call, output in asked.answered().items()]
