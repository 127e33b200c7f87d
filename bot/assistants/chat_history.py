"""What a chat turn sends: the newest of its thread that fits the model's window, after a
summary of the older part (made, and stored, when the kept part moves on)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import openai
from openai import AsyncOpenAI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.assistants.base import joined_instructions
from bot.assistants.chat_store import Question
from bot.assistants.context import (
    IMAGE_TOKENS,
    Entry,
    cut_text,
    estimate_tokens,
    newest_fitting,
    plan_context,
    summary_room,
)
from bot.assistants.errors import translated_errors
from bot.store.chat_models import ChatMessage, ChatSummary

log = logging.getLogger(__name__)

CONTEXT_TOO_LONG = "context_length_exceeded"
SUMMARY_PROMPT = (
    "Summarise the conversation below for your own later reference, in at most 200 words: "
    "who asked what, the facts, names, numbers and decisions that matter, and open questions. "
    "Write only the summary."
)
SUMMARY_HEADING = "Summary of the earlier part of this conversation (older messages are not shown):"


class ContextTooLong(Exception):
    """The server said the request exceeds the model's window."""


@contextmanager
def completion_errors(action: str) -> Iterator[None]:
    """`translated_errors`, with a request too long for the model as `ContextTooLong`."""
    with translated_errors(action):
        try:
            yield
        except openai.BadRequestError as exc:
            if exc.code == CONTEXT_TOO_LONG:
                raise ContextTooLong from exc
            raise


class ChatHistory:
    def __init__(
        self,
        client: AsyncOpenAI,
        sessions: async_sessionmaker[AsyncSession],
        *,
        instructions: str | None,
        completion_timeout_s: float,
    ) -> None:
        self._client = client
        self._sessions = sessions
        self._instructions = instructions
        self._completion_timeout_s = completion_timeout_s

    async def messages(
        self, thread_id: str, question: Question, model: str, budget: int
    ) -> tuple[list[dict[str, Any]], bool]:
        """What this turn sends within `budget` tokens, and whether the question was cut."""
        instructions = joined_instructions(self._instructions, question.instructions) or ""
        async with self._sessions() as session:
            summary = await session.get(ChatSummary, thread_id)
            after = summary.up_to_seq if summary is not None else 0
            rows = list(
                await session.scalars(
                    select(ChatMessage)
                    .where(
                        ChatMessage.thread_id == thread_id,
                        ChatMessage.seq > after,
                        ChatMessage.seq < question.seq,
                    )
                    .order_by(ChatMessage.seq)
                )
            )
        plan = plan_context(
            budget=budget,
            instructions_tokens=estimate_tokens(instructions) if instructions else 0,
            history=[Entry(row.seq, row.role, row.tokens) for row in rows],
            newest_tokens=estimate_tokens(question.text, images=len(question.images)),
            summary_through=summary.up_to_seq if summary is not None else None,
            summary_tokens=summary.tokens if summary is not None else 0,
        )
        summary_text = summary.text if summary is not None else None
        if plan.summarise_through is not None:
            dropped = [row for row in rows if row.seq <= plan.summarise_through]
            summary_text = await self._summarise(
                thread_id, model, budget, summary_text, dropped, plan.summarise_through
            )
        system = instructions
        if plan.use_summary and summary_text:
            system = f"{instructions}\n\n{SUMMARY_HEADING}\n{summary_text}".strip()
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
        if plan.send_from_seq is not None:
            messages += [
                {"role": row.role, "content": row.content}
                for row in rows
                if row.seq >= plan.send_from_seq
            ]
        text = question.text
        images = question.images
        if plan.cut_to_tokens is not None:
            text = cut_text(text, plan.cut_to_tokens - len(images) * IMAGE_TOKENS)
        messages.append({"role": "user", "content": user_content(text, images)})
        return messages, plan.cut_to_tokens is not None

    async def _summarise(
        self,
        thread_id: str,
        model: str,
        budget: int,
        previous: str | None,
        dropped: Sequence[ChatMessage],
        through: int,
    ) -> str:
        """A summary of the previous summary and the newly dropped messages, stored."""
        lines = [
            f"{'Assistant' if row.role == 'assistant' else 'User'}: {row.content}"
            for row in dropped
        ]
        earlier = f"Earlier summary:\n{previous}\n\n" if previous else ""
        room = budget - summary_room(budget) - estimate_tokens(SUMMARY_PROMPT + earlier)
        lines = lines[
            len(lines) - newest_fitting([estimate_tokens(line) for line in lines], room) :
        ]
        content = f"{earlier}Conversation:\n" + "\n".join(lines)
        with completion_errors("summarise"):
            completion = await self._client.chat.completions.create(
                model=model,
                messages=[
                    {"role": "system", "content": SUMMARY_PROMPT},
                    {"role": "user", "content": content},
                ],
                timeout=self._completion_timeout_s,
            )
        text = (completion.choices[0].message.content or "").strip() if completion.choices else ""
        text = cut_text(text, summary_room(budget))
        async with self._sessions.begin() as session:
            stored = await session.get(ChatSummary, thread_id, with_for_update=True)
            if stored is None:
                session.add(
                    ChatSummary(
                        thread_id=thread_id,
                        up_to_seq=through,
                        text=text,
                        tokens=estimate_tokens(text),
                        created_at=time.time(),
                    )
                )
            elif stored.up_to_seq < through:
                stored.up_to_seq, stored.text = through, text
                stored.tokens, stored.created_at = estimate_tokens(text), time.time()
        log.info("chat thread %s: summarised through message %s", thread_id, through)
        return text


def user_content(text: str, images: Sequence[str]) -> str | list[dict[str, Any]]:
    if not images:
        return text
    return [{"type": "text", "text": text}] + [
        {"type": "image_url", "image_url": {"url": url}} for url in images
    ]
