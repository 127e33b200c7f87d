"""Which schema revision a database is at, compared with the revisions this code knows.

The bot migrates at start (`bot.store.migrate.upgrade_schema`, in a child process); the
maintenance commands open an existing database without creating or migrating it
(`open_existing_database`). A database newer than the code (after a rollback of the bot) is
refused by both, in one line.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.store.db import MIGRATIONS_DIR, SCHEMA_HEAD, create_engine, schema_revision

if TYPE_CHECKING:
    from alembic.config import Config


class DatabaseNotReady(Exception):
    """The database cannot be used as it is; the message is one line saying what to do."""


class SchemaTooNew(DatabaseNotReady):
    """The database was migrated by a newer version of the bot than this one."""

    def __init__(self, revision: str) -> None:
        super().__init__(
            f"the database is at schema revision {revision}, newer than this version of the "
            f"bot knows (head {SCHEMA_HEAD}): upgrade the bot or restore a backup"
        )
        self.revision = revision


def alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


@cache
def known_revisions() -> tuple[str, ...]:
    """Every revision of this code's migrations, oldest first."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    return tuple(reversed([revision.revision for revision in script.walk_revisions()]))


def refuse_unknown_revision(revision: str | None) -> None:
    """`SchemaTooNew` unless the revision is None (an empty database) or one of ours."""
    if revision is not None and revision not in known_revisions():
        raise SchemaTooNew(revision)


async def open_existing_database(url: str) -> AsyncEngine:
    """An engine on a database the bot has already created and migrated to this code's head.

    Creates nothing: a missing SQLite file, an unreachable server, an empty database or a
    schema at another revision raise `DatabaseNotReady` with one line saying so.
    """
    _refuse_missing_sqlite_file(url)
    engine = create_engine(url, pool_size=2)
    try:
        revision = await schema_revision(engine)
    except (OSError, exc.SQLAlchemyError) as error:
        await engine.dispose()
        raise DatabaseNotReady(
            f"cannot reach the database in DATABASE_URL ({_reason(error)})"
        ) from None
    try:
        _require_head(revision)
    except DatabaseNotReady:
        await engine.dispose()
        raise
    return engine


def _require_head(revision: str | None) -> None:
    if revision == SCHEMA_HEAD:
        return
    if revision is None:
        raise DatabaseNotReady(
            "the database in DATABASE_URL has no bot tables (not initialised): "
            "start the bot once to create them"
        )
    refuse_unknown_revision(revision)
    raise DatabaseNotReady(
        f"the database is at schema revision {revision}, older than this version of the bot "
        f"(head {SCHEMA_HEAD}): start the bot once to upgrade it"
    )


def _refuse_missing_sqlite_file(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return
    if not Path(parsed.database).is_file():
        raise DatabaseNotReady(
            f"no database at {parsed.database} (DATABASE_URL): start the bot once to create it, "
            "or point DATABASE_URL at the bot's database"
        )


def _reason(error: BaseException) -> str:
    reason = getattr(error, "orig", None) or error
    first_line = (str(reason).splitlines() or [""])[0][:160]
    return f"{type(reason).__name__}: {first_line}" if first_line else type(reason).__name__
