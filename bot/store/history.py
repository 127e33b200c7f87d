"""History: what the bot itself holds of a conversation's earlier turns."""

from __future__ import annotations

from sqlalchemy import select

from bot.store.database import Database
from bot.store.models import InboxMessage, Turn


class History:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def stored_thread(
        self, conversation_id: int, *, before_ts: str
    ) -> list[tuple[str, str, str, bool]]:
        """What the bot itself holds of a thread before `before_ts`, oldest first: the
        messages it was sent and the answers it posted, as (ts, author id, text, from the
        bot). Read instead of asking Slack, whose thread reads are rate-limited."""
        async with self._db.engine.connect() as connection:
            asked = await connection.execute(
                select(InboxMessage.ts, InboxMessage.user_id, InboxMessage.text).where(
                    InboxMessage.conversation_id == conversation_id,
                    InboxMessage.refused.is_(False),
                )
            )
            answered = await connection.execute(
                select(Turn.reply_ts, Turn.answer).where(
                    Turn.conversation_id == conversation_id,
                    Turn.reply_ts.is_not(None),
                    Turn.answer.is_not(None),
                )
            )
            found = [(str(ts), str(user), str(text), False) for ts, user, text in asked]
            found += [(str(ts), "", str(answer), True) for ts, answer in answered]
        return sorted(
            (row for row in found if float(row[0]) < float(before_ts)),
            key=lambda row: float(row[0]),
        )

    async def backends_before(self, conversation_id: int, *, turn_id: int) -> set[str]:
        """The backends that earlier turns of the conversation started runs on."""
        async with self._db.engine.connect() as connection:
            rows = await connection.scalars(
                select(Turn.backend)
                .distinct()
                .where(
                    Turn.conversation_id == conversation_id,
                    Turn.id < turn_id,
                    Turn.backend.is_not(None),
                )
            )
            return {str(backend) for backend in rows}

    async def previous_run_id(
        self, conversation_id: int, *, turn_id: int, backend: str
    ) -> str | None:
        """The run (or response) of the conversation's latest earlier turn on `backend`."""
        async with self._db.engine.connect() as connection:
            found = await connection.scalar(
                select(Turn.remote_run_id)
                .where(
                    Turn.conversation_id == conversation_id,
                    Turn.id < turn_id,
                    Turn.backend == backend,
                    Turn.remote_run_id.is_not(None),
                )
                .order_by(Turn.id.desc())
                .limit(1)
            )
            return None if found is None else str(found)
