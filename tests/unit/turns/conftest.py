"""A real store on SQLite in memory, with the bot's schema.

The engine is set up as the bot's SQLite engine (`bot.store.db.create_engine`: one pooled
connection, its pragmas) on a named in-memory database. That database lives while a
connection to it is open, so each test's is held open by a connection of its own: a turn
cancelled mid-query (a process "dying") makes the pool drop its connection, not the data.
The schema is migrated once per test process and copied into each test's database.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool

from bot.store.db import _sqlite_pragmas, database_health, migrate
from bot.store.repository import Store


def _memory_database() -> tuple[sqlite3.Connection, AsyncEngine]:
    """A new named in-memory database: the connection keeping it alive, and the engine."""
    name = f"file:unit-{uuid.uuid4().hex}?mode=memory&cache=shared"
    keeper = sqlite3.connect(name, uri=True)
    engine = create_async_engine(
        f"sqlite+aiosqlite:///{name}&uri=true",
        poolclass=AsyncAdaptedQueuePool,
        pool_size=1,
        max_overflow=0,
        pool_timeout=60,
        hide_parameters=True,
    )
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return keeper, engine


@pytest.fixture(scope="session")
def migrated() -> Iterator[sqlite3.Connection]:
    """A database with the newest schema, to copy."""
    keeper, engine = _memory_database()

    async def upgrade() -> None:
        await migrate(engine)
        await engine.dispose()

    asyncio.run(upgrade())
    yield keeper
    keeper.close()


@pytest.fixture
async def store(migrated: sqlite3.Connection) -> AsyncIterator[Store]:
    keeper, engine = _memory_database()
    migrated.backup(keeper)
    database_health(engine)
    yield Store(engine)
    await engine.dispose()
    keeper.close()
