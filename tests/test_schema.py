"""The schema's revision: Alembic migrates at start, and a current database skips it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory

from bot.store.db import MIGRATIONS_DIR, SCHEMA_HEAD


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
