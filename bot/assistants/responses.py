"""OpenAI's Responses API: a Conversation per Slack thread, a background response per turn."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Sequence
from typing import Any

from openai import AsyncOpenAI, omit
from openai.types.responses import Response

from bot.assistants.base import (
    NO_OPTIONS,
    RunCheck,
    RunState,
    StreamDelta,
    StreamEvent,
    StreamStarted,
    TurnOptions,
    Usage,
    joined_instructions,
)
from bot.assistants.errors import translated_errors
from bot.attachments import Image, image_data_url
from bot.text import Source, with_sources

_STATES = {
    "queued": RunState.QUEUED,
    "in_progress": RunState.IN_PROGRESS,
    "completed": RunState.COMPLETED,
    "failed": RunState.FAILED,
    "incomplete": RunState.INCOMPLETE,
    "cancelled": RunState.CANCELLED,
}
_TERMINAL_EVENTS = {"response.completed", "response.failed", "response.incomplete"}


class ResponsesBackend:
    name = "responses"

    def __init__(
        self,
        client: AsyncOpenAI,
        *,
        model: str,
        instructions: str | None = None,
        tools: list[dict[str, Any]] | None = None,
    ) -> None:
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
        with translated_errors("create response"):
            response = await self._once.responses.create(
                background=True, **self._response_args(thread_id, text, turn_key, images, options)
            )
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

    async def check_run(self, *, thread_id: str, run_id: str) -> RunCheck:
        if run_id.startswith(_AFTER_ITEM):
            return await self._answer_after(thread_id, run_id.removeprefix(_AFTER_ITEM))
        with translated_errors("check response"):
            response = await self._client.responses.retrieve(run_id)
        return _check(response)

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
        args = self._response_args(thread_id, text, turn_key, images, options)
        with translated_errors("stream response"):
            stream = await self._once.responses.create(background=True, stream=True, **args)
            async for event in stream:
                if event.type == "response.created":
                    yield StreamStarted(event.response.id)
                elif event.type == "response.output_text.delta":
                    yield StreamDelta(event.delta)
                elif event.type in _TERMINAL_EVENTS:
                    yield _check(event.response)  # type: ignore[union-attr]
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
    ) -> dict[str, Any]:
        content: str | list[dict[str, Any]] = text
        if images:
            content = [{"type": "input_text", "text": text}] + [
                {"type": "input_image", "image_url": image_data_url(image)} for image in images
            ]
        args: dict[str, Any] = {
            "model": options.model or self._model,
            "conversation": conversation_id,
            "input": [{"role": "user", "content": content}],
            "store": True,
            "metadata": {"turn_key": turn_key},
            # A Conversation grows with every turn; "auto" drops its oldest items when it no
            # longer fits the model's window, where "disabled" (the default) fails the turn.
            "truncation": "auto",
        }
        instructions = joined_instructions(self._instructions, options.instructions)
        if instructions:
            args["instructions"] = instructions
        if self._tools:
            args["tools"] = self._tools
        return args


_AFTER_ITEM = "after-item:"


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
