"""Upgrades lose nothing: a database at every earlier revision, full of linked rows, comes
through the bot's own start-up migration to head with every row and every link intact.

The revisions come from the Alembic script directory and the tables and columns from the
database itself at that revision, so a new migration is covered without touching this file.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.settings import database_url as async_database_url
from bot.store.db import (
    SCHEMA_HEAD,
    ForeignKeyViolation,
    create_engine,
    migrate,
    schema_revision,
)
from bot.store.migrate import MigrationStopped, upgrade_schema
from bot.store.schema import alembic_config, known_revisions
from tests.warm_start import run_module

pytestmark = pytest.mark.empty_database  # each test migrates an empty database itself

ROWS_PER_TABLE = 3
EARLIER = [revision for revision in known_revisions() if revision != SCHEMA_HEAD]

Rows = dict[str, list[dict[str, Any]]]

CLEARED_ON_PURPOSE = {("inbox_messages", "action_token"): "0011"}
"""Columns an upgrade empties by design, and the revision that does: 0011 clears the action
tokens of finished turns (a token acts for its message only while the turn runs). Every turn
written here is done."""

_REALISTIC: dict[str, Callable[[int], Any]] = {
    "team_id": lambda i: f"T000{i}",
    "enterprise_id": lambda i: f"E000{i}",
    "channel_id": lambda i: f"C000{i}",
    "context_channel_id": lambda i: f"C100{i}",
    "user_id": lambda i: f"U000{i}",
    "requester": lambda i: f"U000{i}",
    "decided_by": lambda i: f"U900{i}",
    "updated_by": lambda i: f"U800{i}",
    "thread_ts": lambda i: f"1760000000.00010{i}",
    "ts": lambda i: f"1760000001.00020{i}",
    "placeholder_ts": lambda i: f"1760000002.00030{i}",
    "reply_ts": lambda i: f"1760000003.00040{i}",
    "message_ts": lambda i: f"1760000004.00050{i}",
    "surface": lambda i: "channel",
    "backend": lambda i: "responses",
    "remote_id": lambda i: f"conv_68a1b2c3d4e5f6{i}",
    "remote_run_id": lambda i: f"resp_68a1b2c3d4e5f6{i}",
    "thread_id": lambda i: f"conv_68a1b2c3d4e5f6{i}",
    "status": lambda i: "done",
    "outcome": lambda i: "completed",
    "answer": lambda i: f"Deploy with `make release` (step {i}); roll back with `make undo`. ✅",
    "text": lambda i: f'<@UBOT> how do we deploy service {i}? — ünïcode & "quotes"',
    "value": lambda i: "down" if i % 2 else "up",
    "reason": lambda i: f"It skipped the migration step ({i})",
    "role": lambda i: "user" if i % 2 else "assistant",
    "model": lambda i: "gpt-5-mini",
    "decision": lambda i: "allow",
    "budget_unit": lambda i: "usd",
    "budget_period": lambda i: "month",
    "field": lambda i: "model",
    "token_type": lambda i: "bot",
    "event_type": lambda i: "response.completed",
    "state": lambda i: json.dumps({"call": "search", "round": i}),
    "arguments": lambda i: json.dumps({"query": f"deploy {i}"}),
    "files": lambda i: json.dumps([{"id": f"F000{i}", "name": "plan.pdf"}]),
}


def _value(column: sa.Column[Any], i: int) -> Any:
    """A realistic value for this column in row `i` (1-based), distinct per row."""
    if column.name in _REALISTIC:
        value = _REALISTIC[column.name](i)
        length = getattr(column.type, "length", None)
        return value[:length] if isinstance(value, str) and length else value
    kind = column.type
    if isinstance(kind, sa.Boolean):
        return i % 2 == 1
    if isinstance(kind, sa.Integer):
        return 10 * i + 7
    if isinstance(kind, sa.DateTime):
        return datetime(2026, 1, i, 12, 30, 15)
    if isinstance(kind, sa.Float | sa.Numeric):
        return 1_760_000_000.25 + i
    if isinstance(kind, sa.String) and kind.length:
        return f"{column.name}-{i}"[-kind.length :]
    return f"{column.name} of row {i}: free text ✓"


def _fill(connection: Connection) -> Rows:
    """Rows in every table, each child row linked to the parent row of the same number."""
    metadata = sa.MetaData()
    metadata.reflect(connection)
    written: Rows = {}
    for table in metadata.sorted_tables:
        if table.name == "alembic_version":
            continue
        rows = []
        for i in range(1, ROWS_PER_TABLE + 1):
            row = {column.name: _value(column, i) for column in table.columns}
            for column in table.primary_key.columns:
                if isinstance(column.type, sa.Integer):
                    row[column.name] = 100 * (len(written) + 1) + i
            for key in table.foreign_keys:
                parent = written[key.column.table.name][i - 1]
                row[key.parent.name] = parent[key.column.name]
            rows.append(row)
        connection.execute(table.insert(), rows)
        written[table.name] = rows
    return written


def _read(connection: Connection, columns_of: dict[str, list[str]]) -> Rows:
    """Every row of the given tables, only the given columns, in primary key order."""
    metadata = sa.MetaData()
    metadata.reflect(connection, only=list(columns_of))
    found: Rows = {}
    for name, columns in columns_of.items():
        table = metadata.tables[name]
        query = sa.select(*(table.c[column] for column in columns)).order_by(
            *table.primary_key.columns
        )
        found[name] = [dict(row._mapping) for row in connection.execute(query)]
    return found


def _upgrade_to(connection: Connection, revision: str) -> None:
    from alembic import command

    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def _database_at(url: str, revision: str) -> Rows:
    """A database migrated to `revision` and filled; what was written."""
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade_to, revision)
        assert await schema_revision(engine) == revision
        async with engine.begin() as connection:
            return await connection.run_sync(_fill)
    finally:
        await engine.dispose()


async def _read_back(engine: AsyncEngine, written: Rows) -> Rows:
    columns_of = {name: list(rows[0]) for name, rows in written.items()}
    async with engine.connect() as connection:
        return await connection.run_sync(_read, columns_of)


@pytest.mark.parametrize("revision", EARLIER)
async def test_upgrading_from_every_earlier_revision_keeps_every_row_and_link(
    database_url: str, revision: str
) -> None:
    url = async_database_url(database_url)
    written = await _database_at(url, revision)
    engine = create_engine(url)  # as the bot opens it: on SQLite with foreign keys on
    try:
        before = await _read_back(engine, written)
        await migrate(engine)
        assert await schema_revision(engine) == SCHEMA_HEAD
        after = await _read_back(engine, written)
    finally:
        await engine.dispose()
    assert {name: len(rows) for name, rows in before.items()} == {
        name: ROWS_PER_TABLE for name in written
    }
    expected = _cleared_on_purpose(before, since=revision)
    for name in written:  # one table at a time, so a failure names the table that lost data
        assert after[name] == expected[name], f"{name} changed in the upgrade from {revision}"
    if "feedback" in written:  # the losses issue 17 found, said plainly
        assert [row["turn_id"] for row in after["inbox_messages"]] == [
            row["id"] for row in written["turns"]
        ]


def _cleared_on_purpose(rows: Rows, *, since: str) -> Rows:
    """The rows as an upgrade from revision `since` leaves them (revisions sort as text)."""
    cleared = {column for column, by in CLEARED_ON_PURPOSE.items() if by > since}
    return {
        table: [
            {column: None if (table, column) in cleared else value for column, value in row.items()}
            for row in table_rows
        ]
        for table, table_rows in rows.items()
    }


def test_every_revision_is_covered() -> None:
    assert EARLIER and EARLIER[0] == "0001" and SCHEMA_HEAD not in EARLIER
    assert len(EARLIER) == len(known_revisions()) - 1


@pytest.mark.parametrize("in_child", [False, True], ids=["in-process", "as-the-bot-starts"])
async def test_an_upgrade_that_would_leave_broken_links_is_rolled_back(
    tmp_path: object, in_child: bool
) -> None:
    """`PRAGMA foreign_key_check` after the SQLite migration: a vote for a turn that does not
    exist (as a migration that lost its parent rows would leave) stops the upgrade, loudly,
    and leaves the database at its old revision with every row as it was. The bot migrates
    in a child process (`upgrade_schema`): the same line comes back from it."""
    url = async_database_url(f"sqlite:///{tmp_path}/bot.db")
    written = await _database_at(url, "0006")
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            # PRAGMA foreign_keys changes nothing inside a transaction: run outside one.
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            await connection.exec_driver_sql(
                "DELETE FROM turns WHERE id = (SELECT MIN(id) FROM turns)"
            )
            await connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        before = await _read_back(engine, {k: v for k, v in written.items() if k != "turns"})
        with pytest.raises(
            MigrationStopped if in_child else ForeignKeyViolation,
            match=r"^the schema migration left \d+ row\(s\) pointing at missing rows "
            r"\(feedback → turns.*\); it was rolled back and the database is unchanged$",
        ):
            await (upgrade_schema(engine) if in_child else migrate(engine))
        assert await schema_revision(engine) == "0006"
        assert (
            await _read_back(engine, {k: v for k, v in written.items() if k != "turns"}) == before
        )
        async with engine.connect() as connection:  # the pooled connection has its keys back on
            assert await connection.scalar(sa.text("PRAGMA foreign_keys")) == 1
    finally:
        await engine.dispose()


_MIGRATE = """
import asyncio, sys
from bot.store.db import create_engine, migrate

async def main() -> None:
    engine = create_engine(sys.argv[1])
    await migrate(engine)
    await engine.dispose()

asyncio.run(main())
"""


async def test_processes_starting_together_upgrade_once_and_lose_nothing(
    database_url: str,
) -> None:
    """Replicas started together on an old database: one migrates, the others wait for it
    (PostgreSQL: an advisory lock; SQLite: the write lock) and then find nothing to do."""
    url = async_database_url(database_url)
    written = await _database_at(url, EARLIER[0])
    environment = dict(os.environ)
    finished = await asyncio.gather(  # three processes (warm starts), side by side
        *(
            asyncio.to_thread(
                run_module, "-c", [_MIGRATE, url], env=environment, cwd=Path.cwd(), timeout=60
            )
            for _ in range(3)
        )
    )
    for process in finished:
        assert process.returncode == 0, process.stderr
    engine = create_engine(url)
    try:
        assert await schema_revision(engine) == SCHEMA_HEAD
        assert await _read_back(engine, written) == written
    finally:
        await engine.dispose()
