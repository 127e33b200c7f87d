"""The one engine handle and session maker every repository shares."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from sqlalchemy import Executable
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker


def dialect_insert(engine: AsyncEngine) -> Callable[[Any], Any]:
    """The engine's dialect's own INSERT (with `on_conflict_…`), PostgreSQL's or SQLite's.
    Only that dialect's module is imported: a SQLite bot never loads PostgreSQL's."""
    name = "postgresql" if engine.dialect.name == "postgresql" else "sqlite"
    insert: Callable[[Any], Any] = importlib.import_module(f"sqlalchemy.dialects.{name}").insert
    return insert


class Database:
    """The engine, its session maker and the dialect's own INSERT (for upserts).

    Hot, single-statement work uses Core on a plain connection (`write`): the ORM session
    costs about a third of the CPU of such a statement. The session maker is for the few
    units of work that read and write several tables.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessions: async_sessionmaker[AsyncSession] = async_sessionmaker(
            engine, expire_on_commit=False
        )
        self.dialect = engine.dialect.name
        self._insert = dialect_insert(engine)

    def insert(self, table: Any) -> Any:
        return self._insert(table)

    async def write(self, statement: Executable, params: dict[str, Any] | None = None) -> bool:
        """One statement in its own transaction on a plain connection; True if it hit a row."""
        async with self.engine.begin() as connection:
            result = await connection.execute(statement, params)
            return bool(getattr(result, "rowcount", 0))
