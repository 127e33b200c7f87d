"""A single-token bot on SQLite loads neither cryptography nor PostgreSQL's dialect nor Alembic,
nor the assistant backends it is not configured for (issue 19: peak RSS). Each stays in memory
for the life of the process: cryptography is imported when a secret is first encrypted or read,
PostgreSQL's dialect when the database is PostgreSQL; a database not yet at the schema head is
migrated by a child process.

The command line imports only what each command uses (issue 18: the tests start it often):
`--version` and `--help` no library at all, `usage` and `purge` no OpenAI SDK unless purge
deletes threads there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from cryptography.fernet import Fernet

from bot.crypto import token_cipher
from bot.store.db import SCHEMA_HEAD

START = textwrap.dedent(
    """
    import asyncio, sys
    import bot.bootstrap, bot.runtime
    from bot.assistants.factory import make_backend
    from bot.crypto import token_cipher
    from bot.settings import load_settings
    from bot.store.database import Database
    from bot.store.db import create_engine, schema_revision
    from bot.store.migrate import upgrade_schema

    async def opened() -> str | None:
        engine = create_engine(settings.database_url)
        await upgrade_schema(engine)
        backend = make_backend(settings, engine)
        try:
            return await schema_revision(engine)
        finally:
            await backend.close()
            await engine.dispose()

    settings = load_settings()
    token_cipher(settings.token_encryption_keys, bot_token=settings.slack_bot_token)
    Database(create_engine(settings.database_url)).insert(bot.store.models.Conversation)
    revision = asyncio.run(opened())
    backends = sorted(m.split(".")[-1] for m in sys.modules
                      if m in ("bot.assistants.chat", "bot.assistants.threads",
                               "bot.assistants.responses"))
    print(revision, sorted({m.split(".")[0] for m in sys.modules} & {"cryptography", "alembic"}),
          "sqlalchemy.dialects.postgresql" in sys.modules, backends)
    """
)


def started(env: dict[str, str], directory: Path) -> str:
    return _run(START, env, directory)


def _run(script: str, env: dict[str, str], directory: Path) -> str:
    full = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join(sys.path),
        "SLACK_BOT_TOKEN": "xoxb-1-lean",
        "SLACK_SIGNING_SECRET": "s" * 32,
        "OPENAI_API_KEY": "sk-lean",
        "ASSISTANT_API": "responses",
        "DATABASE_URL": "sqlite:///lean.db",
        **env,
    }
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=full,
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_a_single_token_sqlite_bot_on_a_new_database_imports_only_what_it_uses(
    tmp_path: Path,
) -> None:
    # The Responses backend only: the chat and threads backends' modules are not imported.
    assert started({}, tmp_path) == f"{SCHEMA_HEAD} [] False ['responses']"


def test_encryption_keys_still_import_cryptography_when_set(
    tmp_path: Path, _migrated_sqlite: Path
) -> None:
    shutil.copyfile(_migrated_sqlite, tmp_path / "lean.db")
    keys = {"TOKEN_ENCRYPTION_KEYS": Fernet.generate_key().decode()}
    assert started(keys, tmp_path) == f"{SCHEMA_HEAD} ['cryptography'] False ['responses']"


HEAVY = ("sqlalchemy", "alembic", "openai", "slack_bolt", "slack_sdk", "aiohttp", "cryptography")

COMMANDS = textwrap.dedent(
    """
    import contextlib, io, sys
    from bot.__main__ import main

    HEAVY = set(sys.argv[1].split(","))

    def loaded() -> list[str]:
        return sorted({m.split(".")[0] for m in sys.modules} & HEAVY)

    def run(*argv: str) -> None:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            try:
                main(list(argv))
            except SystemExit:
                pass

    for argv in (["--version"], ["--help"], ["usage", "--help"], ["purge", "--help"]):
        run(*argv)
    print(loaded())
    run("usage")  # the database is missing: one line, after its modules are imported
    print(loaded())
    run("purge", "--older-than-days", "1")
    print(loaded())
    """
)


def test_the_command_line_imports_only_what_each_command_uses(tmp_path: Path) -> None:
    env = {"DATABASE_URL": "sqlite:///missing.db", "OPENAI_API_KEY": ""}
    script = COMMANDS.replace("sys.argv[1]", repr(",".join(HEAVY)))
    help_only, usage, purge = _run(script, env, tmp_path).splitlines()
    assert help_only == "[]"  # --version and every --help: no library at all
    assert usage == "['sqlalchemy']"  # usage: the database only
    assert purge == "['sqlalchemy']"  # purge without OpenAI settings: no SDK, no web server


def test_the_derived_key_encrypts_and_reads_back_on_first_use() -> None:
    cipher = token_cipher((), bot_token="xoxb-1-lean")
    stored = cipher.encrypt("action-token")
    assert stored != "action-token"
    assert token_cipher((), bot_token="xoxb-1-lean").decrypt(stored) == "action-token"
