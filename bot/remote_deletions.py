"""What an uninstall with DELETE_DATA_ON_UNINSTALL deletes beyond the conversations
themselves, and the conversations kept at OpenAI.

The OpenAI ids (threads, Conversations) are recorded in `remote_deletions` in the same
transaction that deletes the rows naming them; they are deleted at OpenAI after it, and a
delete that fails stays recorded for `python -m bot purge` to retry. A conversation made by
another backend than the one configured stays recorded until a purge runs with that backend.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from bot.assistants.base import AssistantBackend
from bot.store.chat_models import ChatMessage, ChatSummary
from bot.store.deletion_models import RemoteDeletion
from bot.store.models import Conversation, DmUser
from bot.store.tool_models import ToolApproval

log = logging.getLogger(__name__)


async def forget_team_rows(
    connection: AsyncConnection, *, conversations: Any, where: Any, teams: Sequence[str]
) -> None:
    """Inside the uninstall's transaction, before its conversations go: record their OpenAI
    ids, and delete the chat backend's stored messages and summaries, pending tool approvals
    and the DM users of `teams`. `conversations` selects the ids, `where` the rows."""
    remote = (
        await connection.execute(
            sa.select(Conversation.backend, Conversation.remote_id, Conversation.team_id).where(
                where, Conversation.remote_id.is_not(None), Conversation.backend.is_not(None)
            )
        )
    ).all()
    await record_remote(connection, [(str(b), str(r), t) for b, r, t in remote])
    thread_ids = sa.select(Conversation.remote_id).where(where, Conversation.remote_id.is_not(None))
    await connection.execute(sa.delete(ChatMessage).where(ChatMessage.thread_id.in_(thread_ids)))
    await connection.execute(sa.delete(ChatSummary).where(ChatSummary.thread_id.in_(thread_ids)))
    await connection.execute(
        sa.delete(ToolApproval).where(ToolApproval.conversation_id.in_(conversations))
    )
    await connection.execute(sa.delete(DmUser).where(DmUser.team_id.in_(teams)))


async def record_remote(
    connection: AsyncConnection | AsyncSession, found: Sequence[tuple[str, str, str | None]]
) -> None:
    """Record (backend, remote id, team) to delete at OpenAI, once each, in the caller's
    transaction."""
    now = time.time()
    for backend, remote_id, team_id in found:
        exists = await connection.scalar(
            sa.select(RemoteDeletion.id).where(
                RemoteDeletion.backend == backend, RemoteDeletion.remote_id == remote_id
            )
        )
        if exists is None:
            await connection.execute(
                sa.insert(RemoteDeletion).values(
                    backend=backend,
                    remote_id=remote_id,
                    team_id=team_id,
                    attempts=0,
                    created_at=now,
                )
            )


@dataclass(frozen=True)
class RemoteOutcome:
    deleted: int
    failed: int


async def delete_recorded(engine: AsyncEngine, backend: AssistantBackend) -> RemoteOutcome:
    """Delete at OpenAI every recorded conversation of `backend`; each one deleted (or
    already gone) is forgotten, each failure stays recorded for the next try."""
    async with engine.connect() as connection:
        pending = (
            await connection.execute(
                sa.select(RemoteDeletion.id, RemoteDeletion.remote_id).where(
                    RemoteDeletion.backend == backend.name
                )
            )
        ).all()
    deleted = failed = 0
    for row_id, remote_id in pending:
        try:
            await backend.delete_thread(remote_id)
        except Exception as exc:
            failed += 1
            log.warning("could not delete %s at OpenAI (%s); purge retries it", remote_id, exc)
            forget: Any = (
                sa.update(RemoteDeletion)
                .where(RemoteDeletion.id == row_id)
                .values(attempts=RemoteDeletion.attempts + 1)
            )
        else:
            deleted += 1
            forget = sa.delete(RemoteDeletion).where(RemoteDeletion.id == row_id)
        async with engine.begin() as connection:
            await connection.execute(forget)
    if deleted or failed:
        log.info("deleted %s conversations at OpenAI; %s left to retry", deleted, failed)
    return RemoteOutcome(deleted=deleted, failed=failed)
