"""Reads of one statement inside Slack's ack: the channel's off switch, whether a thread is
known, the channel in view beside a DM.

Each wait of the ack path is a wait for a turn of the event loop, which answer work keeps
busy. On PostgreSQL these reads run outside a transaction (autocommit): one round trip to the
server instead of three (BEGIN, the statement, ROLLBACK). On a SQLite file they run on a
thread of their own with its own connection (bot.store.sqlite_thread): one turn of the loop
instead of four or five (aiosqlite's cursor, execute, fetch, close, rollback).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Executable, Row
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.store.sqlite_thread import SqliteThread

Statement = tuple[Executable, dict[str, Any] | None]


class AckReads:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = (
            engine.execution_options(isolation_level="AUTOCOMMIT")
            if engine.dialect.name == "postgresql"
            else engine
        )
        self._thread = SqliteThread.beside(engine, "sqlite-ack-reads")

    async def first(
        self, statement: Executable, parameters: dict[str, Any] | None = None
    ) -> Row[Any] | None:
        """The statement's first row, if any."""
        if self._thread is not None:
            return await self._thread.read(_first, (statement, parameters))
        async with self._engine.connect() as connection:
            return (await connection.execute(statement, parameters)).first()


def _first(connection: Connection, statement: Statement) -> Row[Any] | None:
    return connection.execute(*statement).first()
