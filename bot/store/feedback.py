"""Feedback: the votes people give answers."""

from __future__ import annotations

import time

from sqlalchemy import func, select

from bot.store.database import Database
from bot.store.models import Conversation, Feedback, Turn


class Feedbacks:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def record_feedback(
        self, *, turn_id: int, user_id: str, value: str, team_id: str | None = None
    ) -> bool:
        """Store a vote; False (nothing stored) when the answer is another workspace's."""
        async with self._db.sessions.begin() as session:
            if team_id is not None:
                owner = await session.scalar(
                    select(Conversation.team_id)
                    .join(Turn, Turn.conversation_id == Conversation.id)
                    .where(Turn.id == turn_id)
                )
                if owner is not None and owner != team_id:
                    return False
            await session.execute(
                self._db.insert(Feedback)
                .values(turn_id=turn_id, user_id=user_id, value=value, created_at=time.time())
                .on_conflict_do_update(
                    index_elements=["turn_id", "user_id"],
                    set_={"value": value, "created_at": time.time()},
                )
            )
            return True

    async def feedback_counts(self) -> dict[str, int]:
        async with self._db.sessions() as session:
            rows = await session.execute(
                select(Feedback.value, func.count()).group_by(Feedback.value)
            )
            return {value: count for value, count in rows.tuples()}
