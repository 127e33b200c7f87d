"""A real store on SQLite in memory, with the bot's schema.

The engine is set up as the bot's SQLite engine (`bot.store.db.create_engine`: one pooled
connection, its pragmas) on a named in-memory database. That database lives while a
connection to it is open, so the fixture holds one of its own: a turn cancelled mid-query
(a process "dying") makes the pool drop its connection without losing the data.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool

from bot.store.db import _sqlite_pragmas, database_health, migrate
from bot.store.repository import Store


@pytest.fixture
async def store() -> AsyncIterator[Store]:
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
    database_health(engine)
    await migrate(engine)
    yield Store(engine)
    await engine.dispose()
    keeper.close()
