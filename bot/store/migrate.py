"""Schema migrations at start, in a short-lived process of their own.

Alembic and the migration scripts cost the serving process about 10 MiB that it would keep for
its whole life, for work done once. So `upgrade_schema` looks at the database's revision
(plain SQL) and, only when it is not at this code's head (a new database, or one an older bot
made), runs `python -m bot.store.migrate`: a child that imports SQLAlchemy and Alembic, not
the bot, migrates (`bot.store.db.migrate`: locks, SQLite's foreign-key checks) and exits. What
stops it is one line, which the bot prints as its start-up error, as when it migrated itself.

An in-memory SQLite database exists only on its connection: it is migrated in this process.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.store.db import (
    SCHEMA_HEAD,
    ForeignKeyViolation,
    create_engine,
    migrate,
    schema_revision,
)
from bot.store.schema import DatabaseNotReady

STOPPED = 3
"""The child's exit status when it stopped with one line (on its stdout) saying why."""


class MigrationStopped(DatabaseNotReady):
    """The migration did not complete; the message is the one line saying why."""


async def upgrade_schema(
    engine: AsyncEngine, *, log_level: str = "INFO", log_format: str = "text"
) -> None:
    """Bring the database to this code's head, in a child process when there is work to do.

    Raises `MigrationStopped` (one line) when the child stops: a database newer than this
    code, a migration that broke a link (rolled back), a database lost half-way. The child
    logs to this process's stderr with the same level and format.
    """
    if await schema_revision(engine) == SCHEMA_HEAD:
        return
    if engine.url.database in (None, "", ":memory:"):
        await migrate(engine)
        return
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        __name__,
        log_level,
        log_format,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    # The address (with its password) goes through a pipe, not the command line or environment.
    said, _ = await child.communicate(engine.url.render_as_string(hide_password=False).encode())
    if child.returncode == 0:
        return
    line = said.decode(errors="replace").strip()
    if child.returncode != STOPPED or not line:
        line = f"the schema migration failed (exit status {child.returncode}; see above)"
    raise MigrationStopped(line)


def cannot_open(error: BaseException) -> str:
    """The line for a database that could not be opened or was lost during the migration."""
    reason = getattr(error, "orig", None) or error
    detail = str(reason).splitlines()[0][:160] if str(reason) else "no detail"
    return f"cannot open the database in DATABASE_URL ({type(reason).__name__}: {detail})"


async def _migrate(url: str) -> None:
    engine = create_engine(url, pool_size=1)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()


def main(argv: list[str]) -> int:
    """The child: the URL on stdin, the log level and format as arguments."""
    from bot.logs import configure

    level, log_format = argv
    configure(level, log_format)
    if level != "DEBUG":
        logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        asyncio.run(_migrate(sys.stdin.read().strip()))
    except (DatabaseNotReady, ForeignKeyViolation) as error:
        print(error)
        return STOPPED
    except (OSError, SQLAlchemyError) as error:
        print(cannot_open(error))
        return STOPPED
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
