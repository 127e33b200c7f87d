"""A SQLite transaction on a thread of its own: one turn of the event loop per transaction.

aiosqlite sends every statement to its connection's thread and back, three or four times
(cursor, execute, fetch, close): intake's batch of five statements waits for about twenty
turns of the event loop, and a loop busy answering takes milliseconds to tens of them a
turn, so the ack waited for the loop, not for the disk. Here the whole transaction runs in
one call to a thread that holds a plain sqlite3 connection to the same file, set up as the
bot's (WAL, `synchronous=FULL`, busy timeout, `BEGIN IMMEDIATE`: bot.store.db), and the ack
waits for one turn. The call returns once the transaction is committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from sqlalchemy import Engine
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.store.db import sqlite_file_engine_beside

In = TypeVar("In")
Out = TypeVar("Out")


class SqliteThread:
    def __init__(self, engine: Engine, name: str) -> None:
        self._engine = engine
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    @classmethod
    def beside(cls, engine: AsyncEngine, name: str) -> SqliteThread | None:
        """A thread (named `name`) with a connection of its own to `engine`'s SQLite file;
        None where there is none (PostgreSQL, or an in-memory database, which exists only on
        `engine`'s connection)."""
        sync = sqlite_file_engine_beside(engine)
        return None if sync is None else cls(sync, name)

    async def run(self, work: Callable[[Connection, In], Out], argument: In) -> Out:
        """`work(connection, argument)` in one transaction on the thread, committed when it
        returns (rolled back when it raises)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._transaction, work, argument)

    async def read(self, work: Callable[[Connection, In], Out], argument: In) -> Out:
        """`work(connection, argument)` for reads: a plain `BEGIN` (WAL: it never waits for
        a writer), rolled back after."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._reading, work, argument)

    def _reading(self, work: Callable[[Connection, In], Out], argument: In) -> Out:
        with self._engine.connect() as connection:
            return work(connection, argument)

    def _transaction(self, work: Callable[[Connection, In], Out], argument: In) -> Out:
        with self._engine.begin() as connection:
            return work(connection, argument)
