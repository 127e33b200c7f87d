"""The maintenance commands and the bot, as real processes, against databases that are not
what they expect: newer than the code, older, empty, missing or unreachable.

`usage` and `purge` need only DATABASE_URL, never create or migrate a database, and say what
is wrong in one line; the bot refuses a database newer than itself in one line.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import column, func, insert, inspect, select, table, text

from bot.settings import database_url as async_database_url
from bot.store.admin_models import TurnUsage
from bot.store.db import SCHEMA_HEAD, create_engine, migrate, schema_revision
from bot.store.models import Conversation
from bot.store.schema import alembic_config
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.slack import FakeSlack
from tests.harness import bot_env
from tests.test_process import refused_start
from tests.test_usage import usage_of
from tests.warm_start import run_module

pytestmark = pytest.mark.slow  # runs `python -m bot` and its commands

_SETTINGS_PREFIXES = ("SLACK_", "OPENAI_", "ASSISTANT_", "AZURE_", "DATABASE_URL", "LOG_")


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -m bot …` with only the given settings (none of this machine's), on a warm
    start (`tests.warm_start`); what each command imports is tests/unit/test_lean_imports.py."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(_SETTINGS_PREFIXES)}
    return run_module("bot", argv, env={**clean, **env}, cwd=Path("/tmp"), timeout=60)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The process failed with exactly one line on stderr, and no traceback."""
    assert result.returncode not in (0, None), result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


async def current_database(url: str) -> None:
    engine = create_engine(async_database_url(url))
    try:
        await migrate(engine)
    finally:
        await engine.dispose()


async def set_revision(url: str, revision: str) -> None:
    engine = create_engine(async_database_url(url))
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text("UPDATE alembic_version SET version_num = :r"), {"r": revision}
            )
    finally:
        await engine.dispose()


async def revision_of(url: str) -> str | None:
    engine = create_engine(async_database_url(url))
    try:
        return await schema_revision(engine)
    finally:
        await engine.dispose()


async def table_count(url: str) -> int:
    engine = create_engine(async_database_url(url))
    try:
        async with engine.connect() as connection:
            names = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
    finally:
        await engine.dispose()
    return len(names)


NEWER = "0999_from_the_future"
TOO_NEW = (
    f"bot: the database is at schema revision {NEWER}, newer than this version of the bot "
    f"knows (head {SCHEMA_HEAD}): upgrade the bot or restore a backup"
)


async def test_a_database_newer_than_the_code_stops_the_bot_and_the_commands_in_one_line(
    database_url: str, slack: FakeSlack, openai_fake: FakeOpenAI
) -> None:
    await current_database(database_url)
    await set_revision(database_url, NEWER)  # as a newer bot leaves it, before a rollback
    env = bot_env(
        slack=slack, openai=openai_fake, database_url=database_url, assistant_api="responses"
    )
    only_database = {"DATABASE_URL": database_url}
    commands = (["usage"], ["purge", "--older-than-days", "30"])
    # Side by side, none of them may write. The bot's start runs in this process
    # (`refused_start`); the commands are real processes.
    started, *results = await asyncio.gather(
        refused_start(env),
        *(asyncio.to_thread(run, argv, only_database) for argv in commands),
    )
    assert started == TOO_NEW
    for argv, result in zip(commands, results, strict=True):
        assert one_line(result) == TOO_NEW, argv
    assert await revision_of(database_url) == NEWER  # nobody touched it


async def test_the_commands_need_only_the_database_url(database_url: str) -> None:
    await current_database(database_url)
    env = {"DATABASE_URL": database_url}
    usage, purge = await asyncio.gather(
        asyncio.to_thread(run, ["usage"], env),
        asyncio.to_thread(run, ["purge", "--older-than-days", "30"], env),
    )
    assert usage.returncode == 0, usage.stderr
    assert usage.stdout.strip() == "No usage recorded in this period."
    assert purge.returncode == 0, purge.stderr
    assert purge.stdout.strip() == "deleted 0 conversation(s) idle for more than 30 days"


async def test_the_commands_never_create_a_database(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    env = {"DATABASE_URL": f"sqlite:///{path}"}
    commands = (["usage"], ["purge", "--older-than-days", "1"])
    results = await asyncio.gather(*(asyncio.to_thread(run, argv, env) for argv in commands))
    for result in results:
        assert one_line(result) == (
            f"bot: no database at {path} (DATABASE_URL): start the bot once to create it, "
            "or point DATABASE_URL at the bot's database"
        )
    assert not path.exists()


async def test_the_commands_neither_initialise_nor_upgrade_a_database(
    postgres_url: str, tmp_path: Path
) -> None:
    for url in (postgres_url, f"sqlite:///{tmp_path}/empty.db"):
        if url.startswith("sqlite"):
            (tmp_path / "empty.db").touch()
        result = await asyncio.to_thread(run, ["usage"], {"DATABASE_URL": url})
        assert one_line(result) == (
            "bot: the database in DATABASE_URL has no bot tables (not initialised): "
            "start the bot once to create them"
        )
        assert await table_count(url) == 0
    older = f"sqlite:///{tmp_path}/old.db"
    engine = create_engine(async_database_url(older))
    async with engine.begin() as connection:

        def to_0006(sync: object) -> None:
            from alembic import command

            config = alembic_config()
            config.attributes["connection"] = sync
            command.upgrade(config, "0006")

        await connection.run_sync(to_0006)
    await engine.dispose()
    result = await asyncio.to_thread(
        run, ["purge", "--older-than-days", "1"], {"DATABASE_URL": older}
    )
    assert one_line(result) == (
        f"bot: the database is at schema revision 0006, older than this version of the bot "
        f"(head {SCHEMA_HEAD}): start the bot once to upgrade it"
    )
    assert await revision_of(older) == "0006"


async def test_an_unreachable_database_is_one_line() -> None:
    env = {"DATABASE_URL": "postgres://nobody@127.0.0.1:1/none"}
    commands = (["usage"], ["purge", "--older-than-days", "1"])
    for result in await asyncio.gather(*(asyncio.to_thread(run, argv, env) for argv in commands)):
        line = one_line(result)
        assert line.startswith("bot: cannot reach the database in DATABASE_URL ("), line


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_purge_without_openai_settings_keeps_threads_that_live_at_openai(
    database_url: str,
) -> None:
    """Deleting the row of a conversation whose thread is at OpenAI would lose the only
    record of it; without OPENAI_API_KEY purge keeps those and says so."""
    await current_database(database_url)
    engine = create_engine(async_database_url(database_url))
    long_ago = time.time() - 90 * 86400
    rows = [("responses", "conv_at_openai"), ("chat", "chat_thread_here"), (None, None)]
    async with engine.begin() as connection:
        await connection.execute(
            insert(Conversation),
            [
                {
                    "team_id": "T0001",
                    "channel_id": "C0001",
                    "thread_ts": f"1700000000.00000{i}",
                    "surface": "channel",
                    "backend": backend,
                    "remote_id": remote_id,
                    "needs_attention": False,
                    "created_at": long_ago,
                    "updated_at": long_ago,
                }
                for i, (backend, remote_id) in enumerate(rows)
            ],
        )
    result = await asyncio.to_thread(
        run, ["purge", "--older-than-days", "30"], {"DATABASE_URL": database_url}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "deleted 2 conversation(s) idle for more than 30 days; kept 1 whose threads are at "
        "OpenAI: set OPENAI_API_KEY (and ASSISTANT_API) to delete them there too"
    )
    async with engine.connect() as connection:
        left = (await connection.execute(select(Conversation.remote_id))).scalars().all()
        assert list(left) == ["conv_at_openai"]
        assert await connection.scalar(select(func.count()).select_from(Conversation)) == 1
    await engine.dispose()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_usage_names_workspaces_and_reads_as_csv_and_prometheus(database_url: str) -> None:
    await current_database(database_url)
    engine = create_engine(async_database_url(database_url))
    at = datetime(2026, 3, 2, 12, tzinfo=UTC).timestamp()
    usage = [("T0001", 101, 0.00001), ("T0001", 102, 0.00002), ("T0002", 103, None)]
    installations = table(
        "slack_installations",
        *(column(name) for name in ("client_id", "app_id", "team_id", "team_name", "user_id")),
        column("is_enterprise_install"),
    )
    async with engine.begin() as connection:
        await connection.execute(
            insert(TurnUsage),
            [
                {
                    "turn_id": turn_id,
                    "team_id": team,
                    "channel_id": "C0001",
                    "user_id": "U0001",
                    "model": "gpt-5-mini",
                    "input_tokens": 1000,
                    "cached_input_tokens": 0,
                    "output_tokens": 200,
                    "reasoning_tokens": 0,
                    "cost_usd": cost,
                    "at": at,
                }
                for team, turn_id, cost in usage
            ],
        )
        await connection.execute(
            insert(installations).values(
                client_id="1.2",
                app_id="A1",
                team_id="T0001",
                team_name="Acme Ops",
                user_id="UADMIN",
                is_enterprise_install=False,
            )
        )
    await engine.dispose()
    result = await asyncio.to_thread(run, ["usage", "--by", "team"], {"DATABASE_URL": database_url})
    assert result.returncode == 0, result.stderr
    assert [line.split("  ")[0] for line in result.stdout.splitlines()[2:4]] == [
        "T0001 (Acme Ops)",
        "T0002",
    ]
    # The other formats of the same report, made in this process.
    csv_out = await usage_of(database_url, "--by", "team", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(csv_out)))
    assert [(r["team"], r["name"], r["answers"], r["cost_usd"]) for r in rows] == [
        ("T0001", "Acme Ops", "2", "0.000030"),
        ("T0002", "", "1", "0.000000"),
    ]
    metrics = await usage_of(database_url, "--by", "team", "--format", "prometheus")
    assert 'bot_usage_answers{name="Acme Ops",team="T0001"} 2.0' in metrics.splitlines()


async def test_usage_refuses_since_after_until_in_one_line() -> None:
    result = await asyncio.to_thread(
        run, ["usage", "--since", "2026-02-01", "--until", "2026-01-31"], {}
    )
    assert one_line(result) == (
        "bot: --since 2026-02-01 is after --until 2026-01-31: swap them, or leave one out"
    )
    assert result.returncode == 2
