"""Bounds on the OAuth `state` values waiting for an installer to come back.

Every `GET /slack/install` stores one state, and nobody needs to log in to ask for it. Each
new state first deletes the expired ones, and the number waiting is capped (the oldest go
first): a flood of requests keeps at most `MAX_OUTSTANDING_STATES` rows, never a growing
table.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

MAX_OUTSTANDING_STATES = 1000
"""States waiting at once: far more installs than any team runs in ten minutes."""


async def tidy_states(
    engine: AsyncEngine, table: sa.Table, *, keep: int = MAX_OUTSTANDING_STATES
) -> None:
    """Delete expired states, and the oldest beyond the newest `keep - 1` (room for one
    more), in one transaction."""
    now = datetime.now(UTC).replace(tzinfo=None)
    c = table.c
    newest = sa.select(c.id).order_by(c.id.desc()).limit(max(keep - 1, 0)).subquery()
    async with engine.begin() as connection:
        await connection.execute(sa.delete(table).where(c.expire_at <= now))
        await connection.execute(sa.delete(table).where(c.id.not_in(sa.select(newest.c.id))))
