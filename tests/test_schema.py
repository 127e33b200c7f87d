"""The schema's revision: Alembic migrates at start (in a child process of the bot's), and a
current database skips it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from bot.settings import database_url as async_database_url
from bot.store.db import MIGRATIONS_DIR, SCHEMA_HEAD, create_engine, schema_revision
from bot.store.migrate import upgrade_schema


def test_schema_head_names_the_newest_migration() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(config).get_heads() == [SCHEMA_HEAD]


_START = """
import asyncio, sys
from bot.store.db import create_engine, migrate, schema_revision

async def main() -> None:
    engine = create_engine(sys.argv[1])
    await migrate(engine)
    print(await schema_revision(engine), "alembic" in sys.modules)
    await engine.dispose()

asyncio.run(main())
"""


def _start(url: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _START, url], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_a_current_database_starts_without_loading_alembic(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    assert _start(url) == f"{SCHEMA_HEAD} True"  # a new database is migrated
    assert _start(url) == f"{SCHEMA_HEAD} False"  # then it is current: no Alembic in memory


@pytest.mark.empty_database
async def test_the_bot_migrates_a_new_database_in_a_child_process(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`upgrade_schema` (the bot's start) brings an empty database to head without migrating
    in its own process, where Alembic would stay in memory for good."""

    async def not_here(_engine: object) -> None:
        raise AssertionError("migrated in the serving process")

    monkeypatch.setattr("bot.store.migrate.migrate", not_here)
    engine = create_engine(async_database_url(database_url))
    try:
        await upgrade_schema(engine)
        assert await schema_revision(engine) == SCHEMA_HEAD
        await upgrade_schema(engine)  # at head: nothing to do, no child
    finally:
        await engine.dispose()
