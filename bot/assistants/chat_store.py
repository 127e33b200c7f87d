"""A chat thread's messages in the bot's database: a turn's question, stored once, and its
answer, whose storing marks the turn done (the first stored answer wins)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import undefer

from bot.assistants.base import (
    AssistantRejected,
    AssistantUnavailable,
    RunCheck,
    RunState,
    TurnOptions,
)
from bot.assistants.context import estimate_tokens
from bot.attachments import Image, image_data_url
from bot.store.chat_models import ChatMessage, ChatSummary


@dataclass(frozen=True)
class Question:
    """A turn's stored user message and what it needs to be asked (again)."""

    seq: int
    text: str
    images: tuple[str, ...]
    model: str | None
    instructions: str | None
    mcp_servers: tuple[str, ...] | None = None


class ChatStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def has_question(self, thread_id: str, turn_key: str) -> bool:
        async with self._sessions() as session:
            stored = await session.scalar(
                _row(thread_id, turn_key, "user").with_only_columns(ChatMessage.id)
            )
        return stored is not None

    async def delete_thread(self, thread_id: str) -> None:
        async with self._sessions.begin() as session:
            await session.execute(delete(ChatMessage).where(ChatMessage.thread_id == thread_id))
            await session.execute(delete(ChatSummary).where(ChatSummary.thread_id == thread_id))

    async def store_question(
        self,
        thread_id: str,
        turn_key: str,
        text: str,
        images: Sequence[Image],
        options: TurnOptions,
    ) -> None:
        """Store the turn's user message, once however often the turn is started."""
        urls = [image_data_url(image) for image in images]
        row = ChatMessage(
            thread_id=thread_id,
            role="user",
            turn_key=turn_key,
            content=text,
            tokens=estimate_tokens(text),
            images=json.dumps(urls) if urls else None,
            model=options.model,
            instructions=options.instructions,
            mcp_servers=None if options.mcp_servers is None else json.dumps(options.mcp_servers),
            created_at=time.time(),
        )
        await self._insert(row)

    async def store_answer(self, thread_id: str, turn_key: str, text: str, state: RunState) -> str:
        """Store the answer (this marks the run done); the first stored answer wins."""
        row = ChatMessage(
            thread_id=thread_id,
            role="assistant",
            turn_key=turn_key,
            content=text,
            tokens=estimate_tokens(text),
            outcome=state.value,
            created_at=time.time(),
        )
        if await self._insert(row):
            return text
        stored = await self.stored_answer(thread_id, turn_key)
        return stored.text if stored is not None else text

    async def _insert(self, row: ChatMessage) -> bool:
        """Add the row as the thread's next message; False if the turn already has it."""
        for _ in range(5):
            try:
                async with self._sessions.begin() as session:
                    if await _exists(session, row):
                        return False
                    newest = await session.scalar(
                        select(func.max(ChatMessage.seq)).where(
                            ChatMessage.thread_id == row.thread_id
                        )
                    )
                    row.seq = (newest or 0) + 1
                    session.add(row)
                return True
            except IntegrityError:
                continue  # another process stored this row, or took the seq: look again
        raise AssistantUnavailable("chat store: could not store a message")

    async def question(self, thread_id: str, turn_key: str) -> Question:
        async with self._sessions() as session:
            row = await session.scalar(
                _row(thread_id, turn_key, "user").options(undefer(ChatMessage.images))
            )
        if row is None:
            raise AssistantRejected(f"chat run {turn_key}: its question was never stored")
        return Question(
            seq=row.seq,
            text=row.content,
            images=tuple(json.loads(row.images)) if row.images else (),
            model=row.model,
            instructions=row.instructions,
            mcp_servers=None if row.mcp_servers is None else tuple(json.loads(row.mcp_servers)),
        )

    async def stored_answer(self, thread_id: str, turn_key: str) -> RunCheck | None:
        async with self._sessions() as session:
            row = await session.scalar(_row(thread_id, turn_key, "assistant"))
        if row is None:
            return None
        return RunCheck(RunState(row.outcome or RunState.COMPLETED.value), text=row.content)


def _row(thread_id: str, turn_key: str, role: str) -> Any:
    return select(ChatMessage).where(
        ChatMessage.thread_id == thread_id,
        ChatMessage.turn_key == turn_key,
        ChatMessage.role == role,
    )


async def _exists(session: AsyncSession, row: ChatMessage) -> bool:
    found = await session.scalar(
        _row(row.thread_id, row.turn_key, row.role).with_only_columns(ChatMessage.id)
    )
    return found is not None
