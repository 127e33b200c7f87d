"""A chat turn in flight: sending its request, reading the reply as it streams (text, tool
calls, usage), and what a turn holds between two backend calls: the request it sent, an
answer already known, or the tool-call loop it paused (stored with an approval request)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

import openai
from openai import AsyncOpenAI, AsyncStream
from openai.types import CompletionUsage
from openai.types.chat import ChatCompletionChunk

from bot.assistants.base import (
    AssistantRejected,
    AssistantUnavailable,
    RunCheck,
    RunState,
    Usage,
)
from bot.assistants.chat_history import completion_errors
from bot.assistants.errors import translated_errors
from bot.assistants.tool_calls import RequestedCall
from bot.tools.mcp_client import EMPTY_CATALOG, Catalog

FINISH_STATES = {
    "stop": RunState.COMPLETED,
    "length": RunState.INCOMPLETE,
    "tool_calls": RunState.REQUIRES_ACTION,
    "function_call": RunState.REQUIRES_ACTION,
    "content_filter": RunState.FAILED,
}


@dataclass(frozen=True)
class Reply:
    """A model reply: how it ended, its text, what it used, the tool calls it asks for."""

    state: RunState
    text: str
    usage: Usage | None
    tool_calls: tuple[RequestedCall, ...] = ()


async def read_reply(stream: AsyncStream[ChatCompletionChunk]) -> AsyncIterator[str | Reply]:
    """The model's reply as it streams in: each piece of its text at once, then the reply."""
    parts: list[str] = []
    finish: str | None = None
    usage: Usage | None = None
    calls: dict[int, dict[str, str]] = {}
    try:
        with translated_errors("chat completion stream"):
            async with stream:
                async for chunk in stream:
                    if chunk.usage is not None:
                        usage = completion_usage(chunk.model, chunk.usage)
                    for choice in chunk.choices:
                        if choice.delta.content:
                            parts.append(choice.delta.content)
                            yield choice.delta.content
                        for piece in choice.delta.tool_calls or []:
                            call = calls.setdefault(
                                piece.index, {"id": "", "name": "", "arguments": ""}
                            )
                            call["id"] = piece.id or call["id"]
                            if piece.function is not None:
                                call["name"] += piece.function.name or ""
                                call["arguments"] += piece.function.arguments or ""
                        finish = choice.finish_reason or finish
    except openai.APIError as exc:
        # An error event in the middle of the stream: the server gave up on this answer.
        raise AssistantUnavailable(f"chat completion stream: {exc.message}") from exc
    if finish is None:
        raise AssistantUnavailable("chat completion stream: it ended before the answer")
    tool_calls = tuple(RequestedCall(**calls[index]) for index in sorted(calls))
    state = FINISH_STATES.get(finish, RunState.COMPLETED)
    yield Reply(state, "".join(parts), usage, tool_calls)


def assistant_calls(reply: Reply) -> dict[str, Any]:
    """The reply asking for tools, as the message the next request repeats."""
    return {
        "role": "assistant",
        "content": reply.text or None,
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in reply.tool_calls
        ],
    }


def completion_usage(model: str, usage: CompletionUsage | None) -> Usage | None:
    if usage is None:
        return None
    cached = usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else 0
    reasoning = (
        usage.completion_tokens_details.reasoning_tokens if usage.completion_tokens_details else 0
    )
    return Usage(
        model=model,
        input_tokens=usage.prompt_tokens,
        cached_input_tokens=cached or 0,
        output_tokens=usage.completion_tokens,
        reasoning_tokens=reasoning or 0,
    )


@dataclass(frozen=True)
class Opened:
    """A turn's request, sent: the answer streams in from `stream`."""

    stream: AsyncStream[ChatCompletionChunk]
    cut: bool
    model: str = ""
    messages: list[dict[str, Any]] = field(default_factory=list)
    catalog: Catalog = EMPTY_CATALOG
    servers: tuple[str, ...] | None = None

    async def close(self) -> None:
        await self.stream.close()


@dataclass(frozen=True)
class Answered:
    """A turn whose result is known before its request is sent (a stored answer, or a
    thread too long for the model)."""

    check: RunCheck

    async def close(self) -> None:
        return None


@dataclass
class ToolLoop:
    """A turn's tool-call loop as it stands: stored with an approval request (the turn's
    tool state is stored with the turn)."""

    model: str
    messages: list[dict[str, Any]]
    cut: bool = False
    pending: list[dict[str, str]] = field(default_factory=list)
    """Calls of the model's last reply not yet answered (the first waits for approval)."""

    def dump(self) -> str:
        loop = {"model": self.model, "messages": self.messages, "cut": self.cut}
        return json.dumps({**loop, "pending": self.pending})

    @classmethod
    def load(cls, state: str) -> tuple[ToolLoop, dict[str, Any]]:
        """The loop, and all that was stored (a request stored by an earlier version also
        carries the turn's tool state)."""
        try:
            stored = json.loads(state)
            loop = cls(stored["model"], stored["messages"], stored["cut"], stored["pending"])
        except (ValueError, TypeError, KeyError) as exc:
            raise AssistantRejected("chat: the stored tool-call state is unreadable") from exc
        return loop, stored

    async def close(self) -> None:
        return None


async def create_stream(
    client: AsyncOpenAI,
    model: str,
    messages: list[dict[str, Any]],
    catalog: Catalog,
    timeout_s: float,
) -> AsyncStream[ChatCompletionChunk]:
    """Send a turn's request (the catalog's tools offered); the reply streams in."""
    tools: Any = [spec.as_function() for spec in catalog.tools] or openai.omit
    with completion_errors("chat completion"):
        return await client.chat.completions.create(
            model=model,
            messages=cast(Any, messages),
            tools=tools,
            stream=True,
            stream_options={"include_usage": True},
            timeout=timeout_s,
        )
