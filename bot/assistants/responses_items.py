"""Reading the Responses API's objects: a response's state, answer, sources and usage, its
hosted tool calls as task updates, its function calls. Pure, no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from openai.types.responses import Response

from bot.assistants.base import (
    ApprovalRequest,
    RunCheck,
    RunState,
    ToolProgress,
    ToolSource,
    ToolStatus,
    Usage,
)
from bot.text.citations import Source, with_sources

STATES = {
    "queued": RunState.QUEUED,
    "in_progress": RunState.IN_PROGRESS,
    "completed": RunState.COMPLETED,
    "failed": RunState.FAILED,
    "incomplete": RunState.INCOMPLETE,
    "cancelled": RunState.CANCELLED,
}
_HOSTED_TITLES = {
    "web_search_call": "Searching the web",
    "file_search_call": "Searching the files",
    "code_interpreter_call": "Running code",
    "image_generation_call": "Making an image",
}


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


def output_call_ids(input_items: Sequence[dict[str, Any]]) -> list[str]:
    return [
        str(item.get("call_id"))
        for item in input_items
        if item.get("type") == "function_call_output"
    ]


def function_calls(response: Response) -> bool:
    """The response ended asking for function calls (the bot's own tools) instead of an
    answer."""
    return response.status == "completed" and any(
        item.type == "function_call" for item in response.output
    )


def turn_key_of(response: Response) -> str:
    return str((response.metadata or {}).get("turn_key") or "")


def hosted_progress(item: Any, *, done: bool) -> ToolProgress | None:
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


def item_text(item: Any) -> str:
    """The text of a conversation message item (input_text or output_text parts)."""
    return "".join(
        getattr(part, "text", "") or ""
        for part in item.content
        if getattr(part, "type", "") in {"input_text", "output_text"}
    )


def response_check(response: Response) -> RunCheck:
    state = STATES.get(response.status or "in_progress", RunState.IN_PROGRESS)
    if not state.finished:
        return RunCheck(state)
    asked = [item for item in response.output if item.type == "mcp_approval_request"]
    if state is RunState.COMPLETED and asked and not response.output_text:
        item = asked[0]
        request = ApprovalRequest(item.id, item.server_label, item.name, item.arguments)
        return RunCheck(RunState.NEEDS_APPROVAL, approval=request, usage=response_usage(response))
    detail = response.error.message if response.error else None
    if response.incomplete_details is not None:
        detail = response.incomplete_details.reason
    text = with_sources(response.output_text, _sources(response))
    images = sum(item.type == "image_generation_call" for item in response.output)
    return RunCheck(
        state, text=text, detail=detail, produced_files=images, usage=response_usage(response)
    )


def response_usage(response: Response) -> Usage | None:
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
