"""`python -m bot purge --older-than-days N`: forget conversations idle for longer than N days.

Deletes the stored mapping, messages, turns and feedback, and the assistant thread or
Conversation at OpenAI when it belongs to the configured backend; retries the deletes at
OpenAI that failed before (an uninstall's too: `remote_deletions`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.remote_deletions import delete_recorded
from bot.store.chat_models import ChatMessage, ChatSummary
from bot.store.models import Conversation
from bot.store.repository import Store
from bot.store.schema import open_existing_database

if TYPE_CHECKING:
    from bot.assistants.base import AssistantBackend
    from bot.settings import Settings

log = logging.getLogger(__name__)


REMOTE_BACKENDS = ("threads", "responses")
"""Backends whose threads live at OpenAI (the chat backend's live in this database)."""


@dataclass(frozen=True)
class PurgeResult:
    deleted: int
    kept_at_openai: int
    older_than_days: float

    @property
    def summary(self) -> str:
        line = (
            f"deleted {self.deleted} conversation(s) idle for more than "
            f"{self.older_than_days:g} days"
        )
        if self.kept_at_openai:
            line += (
                f"; kept {self.kept_at_openai} whose threads are at OpenAI: set OPENAI_API_KEY "
                "(and ASSISTANT_API) to delete them there too"
            )
        return line


async def purge(settings: Settings, *, older_than_days: float) -> int:
    """Delete conversations idle for longer than the given age; how many were deleted."""
    result = await purge_database(settings.database_url, settings, older_than_days=older_than_days)
    return result.deleted


async def purge_database(
    url: str, openai: Settings | None, *, older_than_days: float
) -> PurgeResult:
    """Delete conversations idle for longer than the given age, in a database the bot created
    (never creating or migrating one), and their threads at OpenAI with the `openai` settings.
    Without them, conversations whose threads are at OpenAI are kept, not orphaned there."""
    engine = await open_existing_database(url)
    backend = _remote_backend(openai, engine)
    try:
        cutoff = time.time() - older_than_days * 86400
        kept = 0 if backend is not None else await _idle_at_openai(engine, cutoff)
        deleted, removed = await Store(engine).retention.delete_conversations_before(
            cutoff, keep_remote=REMOTE_BACKENDS if backend is None else ()
        )
        for backend_name, remote_id in removed:
            if backend_name == "chat":
                await _delete_chat_thread(engine, remote_id)
        if backend is not None:
            # Those just deleted, and any an uninstall or an earlier purge could not delete.
            await delete_recorded(engine, backend)
        log.info("purge: deleted %s conversations idle for over %s days", deleted, older_than_days)
        return PurgeResult(deleted, kept, older_than_days)
    finally:
        if backend is not None:
            await backend.close()
        await engine.dispose()


def _remote_backend(openai: Settings | None, engine: AsyncEngine) -> AssistantBackend | None:
    """The backend that deletes threads at OpenAI; the SDK is imported only when it is needed
    (a purge without OPENAI_API_KEY, and `purge --help`, start quicker without it)."""
    if openai is None:
        return None
    from bot.assistants.factory import make_backend

    return make_backend(openai, engine)


async def _idle_at_openai(engine: AsyncEngine, cutoff: float) -> int:
    async with engine.connect() as connection:
        found = await connection.scalar(
            select(func.count())
            .select_from(Conversation)
            .where(
                Conversation.updated_at < cutoff,
                Conversation.remote_id.is_not(None),
                Conversation.backend.in_(REMOTE_BACKENDS),
            )
        )
    return int(found or 0)


async def _delete_chat_thread(engine: AsyncEngine, thread_id: str) -> None:
    """The chat backend's thread is stored here: its messages and summary go with it."""
    async with engine.begin() as connection:
        await connection.execute(delete(ChatMessage).where(ChatMessage.thread_id == thread_id))
        await connection.execute(delete(ChatSummary).where(ChatSummary.thread_id == thread_id))
