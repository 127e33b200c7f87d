"""Retention: idle conversations deleted once they are old enough."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, cast

from sqlalchemy import CursorResult, and_, delete, or_, select

from bot.remote_deletions import record_remote
from bot.store.database import Database
from bot.store.models import Conversation, Feedback, InboxMessage, Turn


class Retention:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def delete_conversations_before(
        self, cutoff: float, *, keep_remote: Collection[str] = ()
    ) -> tuple[int, Sequence[tuple[str, str]]]:
        """Delete idle conversations last active before `cutoff`: how many, and the (backend,
        remote id) of those that had a remote thread.

        Conversations with a remote thread on one of the `keep_remote` backends stay; the
        OpenAI ids of those deleted are recorded in `remote_deletions` until deleted there."""
        async with self._db.sessions.begin() as session:
            old = and_(
                Conversation.updated_at < cutoff,
                Conversation.needs_attention.is_(False),
                Conversation.lease_owner.is_(None),
                or_(
                    Conversation.remote_id.is_(None),
                    Conversation.backend.is_(None),
                    Conversation.backend.not_in(keep_remote),
                ),
            )
            remote = (
                await session.execute(
                    select(Conversation.backend, Conversation.remote_id).where(
                        old, Conversation.remote_id.is_not(None)
                    )
                )
            ).tuples()
            found = [(str(backend), str(remote_id)) for backend, remote_id in remote]
            at_openai = [(backend, remote_id, None) for backend, remote_id in found]
            await record_remote(session, [row for row in at_openai if row[0] != "chat"])
            ids = select(Conversation.id).where(old).scalar_subquery()
            await session.execute(delete(InboxMessage).where(InboxMessage.conversation_id.in_(ids)))
            await session.execute(
                delete(Feedback).where(
                    Feedback.turn_id.in_(select(Turn.id).where(Turn.conversation_id.in_(ids)))
                )
            )
            await session.execute(delete(Turn).where(Turn.conversation_id.in_(ids)))
            deleted = await session.execute(delete(Conversation).where(old))
            return int(cast(CursorResult[Any], deleted).rowcount or 0), found
