"""Reading the Assistants API's objects: a run's answer (citations as footnotes), its usage,
its turn; and the run's `truncation_strategy` from CONTEXT_TOKENS. Pure, no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bot.assistants.base import Usage
from bot.text.citations import Source, marker_title, with_sources

if TYPE_CHECKING:
    # the beta types package is large (about 12 MiB, 500 modules); only annotations use it
    from openai.types.beta.threads import Message, Run

TOKENS_PER_MESSAGE = 1000
"""How many tokens of CONTEXT_TOKENS one thread message is assumed to take."""


def truncation_strategy(context_tokens: int | None) -> dict[str, Any] | None:
    """The run's `truncation_strategy` from CONTEXT_TOKENS: the newest messages, one per
    thousand tokens (at least two). Unset, the API's default ("auto") drops old messages
    to fit the model's window by itself."""
    if context_tokens is None:
        return None
    return {"type": "last_messages", "last_messages": max(2, context_tokens // TOKENS_PER_MESSAGE)}


def answer_of(messages: Sequence[Message]) -> tuple[str, int]:
    """A run's answer with its citations as footnotes, and how many images it made."""
    parts: list[str] = []
    sources: list[Source] = []
    images = 0
    for message in messages:
        if message.role != "assistant":
            continue
        for block in message.content:
            images += block.type == "image_file"
            if block.type == "text":
                parts.append(block.text.value)
                sources += [
                    Source(title=marker_title(note.text), marker=note.text)
                    for note in block.text.annotations
                    if note.type == "file_citation"
                ]
    return with_sources("\n\n".join(parts), sources), images


def turn_key_of(run: Any) -> str:
    return str((run.metadata or {}).get("turn_key") or "")


def run_usage(run: Run) -> Usage | None:
    """What a run used over all its steps (the API reports it once the run has ended)."""
    if run.usage is None:
        return None
    return Usage(
        model=str(run.model),
        input_tokens=run.usage.prompt_tokens,
        output_tokens=run.usage.completion_tokens,
    )
