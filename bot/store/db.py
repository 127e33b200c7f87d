"""Engine creation, schema migrations (Alembic; at start in a child process: bot.store.migrate)
and database health."""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
import weakref
from enum import Enum
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import Engine, event, exc, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from bot.store import sqlite_locking

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SCHEMA_HEAD = "0012"
"""The newest migration's revision (a test checks it against Alembic's own head). A database
already there starts without importing Alembic, which would cost every process ~12 MiB."""
_MIGRATION_LOCK_KEY = 7_341_902_118

DEFAULT_POOL_SIZE = 20
DEFAULT_POOL_TIMEOUT_S = 30.0
"""How long answer work waits for a pooled connection. Acks never use this pool, so a burst
of turns (up to MAX_CONCURRENT_TURNS, far more than connections) queues for connections
instead of failing steps and retrying them (usage included) after a 2 s wait."""
INTAKE_POOL_TIMEOUT_S = 2.0
"""How long an ack waits for one of intake's connections. Slack wants its ack within 3 s, so
an ack that cannot get a connection fails (Slack redelivers) instead of queueing for 30 s."""
INTAKE_POOL_SIZE = 2
"""Connections intake keeps (on PostgreSQL as many again in bursts): one for its writer,
which stores a batch of messages per transaction, the others for the reads an ack makes
(the channel's off switch, whether a thread is known), which on SQLite run beside a write."""
SQLITE_BUSY_TIMEOUT_MS = 10_000
"""How long a SQLite write waits for the other connection's (intake's or answer work's)
write transaction; such transactions last milliseconds."""
CONNECT_TIMEOUT_S = 5.0
"""How long opening a PostgreSQL connection may take (asyncpg waits 60 s by default)."""

log = logging.getLogger(__name__)


def create_engine(
    url: str,
    *,
    pool_size: int = DEFAULT_POOL_SIZE,
    pool_timeout_s: float = DEFAULT_POOL_TIMEOUT_S,
) -> AsyncEngine:
    """An async engine tuned for the bot's short transactions.

    SQLite gets one pooled connection: this process's answer work queues for it inside the
    process. Intake has connections of its own (`create_intake_engine`); WAL keeps readers
    off the writer's back, and every transaction that may write starts with `BEGIN
    IMMEDIATE` (bot.store.sqlite_locking), so the two wait for each other's writes rather
    than fail with "database is locked". `synchronous=FULL` makes every commit durable
    before it returns: a message Slack got an ack for survives a power cut, not only a
    crash of the process.

    PostgreSQL gets `pool_size` connections kept open (each new one costs a TLS handshake, a
    login and a cold statement cache) plus half as many again for bursts. Every process holds
    up to 1.5 × `pool_size`, plus intake's 4, which must fit the server's connection limit.
    """
    if url.startswith("sqlite"):
        engine = _sqlite_engine(url)
    else:
        engine = _postgres_engine(
            url, pool_size=pool_size, max_overflow=max(1, pool_size // 2), timeout_s=pool_timeout_s
        )
    database_health(engine)
    return engine


def create_intake_engine(url: str, *, beside: AsyncEngine) -> AsyncEngine:
    """Intake's own engine, `beside` the bot's (whose outage tracker it shares): storing a
    message before Slack's ack never waits for a connection that answer work holds. On
    SQLite and on PostgreSQL a small pool of its own. (An in-memory SQLite database exists
    only on its one connection: intake then shares it.)"""
    if url.startswith("sqlite"):
        if beside.url.database in (None, "", ":memory:"):
            return beside
        engine = _sqlite_engine(url, connections=INTAKE_POOL_SIZE)
    else:
        engine = _postgres_engine(
            url,
            pool_size=INTAKE_POOL_SIZE,
            max_overflow=INTAKE_POOL_SIZE,
            timeout_s=INTAKE_POOL_TIMEOUT_S,
        )
    database_health(engine, shared=database_health(beside))
    return engine


def _sqlite_engine(url: str, *, connections: int = 1) -> AsyncEngine:
    engine = create_async_engine(
        url, pool_size=connections, max_overflow=0, pool_timeout=60, hide_parameters=True
    )
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    sqlite_locking.install(engine.sync_engine)
    return engine


def sqlite_file_engine_beside(engine: AsyncEngine) -> Engine | None:
    """A synchronous engine (one sqlite3 connection, for one thread) on the SQLite file of
    `engine`, set up as its connections are (WAL, synchronous=FULL, busy timeout, BEGIN
    IMMEDIATE) and sharing its health tracker; its connection is closed when `engine` is
    disposed. None for PostgreSQL and for an in-memory database (one connection's alone, or
    shared in a cache whose locks do not wait)."""
    url = engine.url
    in_memory = url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"
    if url.get_backend_name() != "sqlite" or in_memory:
        return None
    sync = sqlalchemy.create_engine(
        url.set(drivername="sqlite"),
        pool_size=1,
        max_overflow=0,
        hide_parameters=True,
        connect_args={"check_same_thread": False},  # opened by the thread, closed by dispose
    )
    event.listen(sync, "connect", _sqlite_pragmas)
    sqlite_locking.install(sync)
    _track(sync, database_health(engine))
    event.listen(engine.sync_engine, "engine_disposed", lambda _: sync.dispose())
    return sync


def _postgres_engine(
    url: str, *, pool_size: int, max_overflow: int, timeout_s: float
) -> AsyncEngine:
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=timeout_s,
        pool_recycle=1800,
        hide_parameters=True,
        connect_args={
            "timeout": CONNECT_TIMEOUT_S,
            # A process frozen inside a transaction must not hold row locks for long.
            "server_settings": {"idle_in_transaction_session_timeout": "15000"},
        },
    )
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision; safe when several processes start at once.

    Raises `SchemaError` (one line) when the database is newer than this code, and
    `ForeignKeyViolation` (the migration is rolled back) if a migration broke a link.
    """
    if await schema_revision(engine) == SCHEMA_HEAD:
        return
    async with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            await _migrate_sqlite(connection)
            return
        async with connection.begin():
            if connection.dialect.name == "postgresql":
                await connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
                )
            await connection.run_sync(_upgrade_to_head)


async def _migrate_sqlite(connection: AsyncConnection) -> None:
    """SQLite migrations run with foreign keys off, in one explicit transaction.

    Altering a column rebuilds the table on SQLite (copy, drop, rename); with foreign keys on,
    the drop fires the `ON DELETE` actions of every table that points at it (feedback deleted,
    inbox messages unlinked from their turns). `PRAGMA foreign_keys` cannot change inside a
    transaction, so the connection runs in autocommit mode, turns them off, and issues its
    own `BEGIN IMMEDIATE` (which also makes a second process wait for the first).
    Afterwards `PRAGMA foreign_key_check` must find nothing, or everything is rolled back.
    """
    await connection.execution_options(isolation_level="AUTOCOMMIT")
    await connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    try:
        if await connection.scalar(text("PRAGMA foreign_keys")):
            raise RuntimeError("could not turn SQLite foreign keys off for the migration")
        await connection.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            await connection.run_sync(_upgrade_to_head)
            await connection.run_sync(_check_foreign_keys)
        except BaseException:
            await connection.exec_driver_sql("ROLLBACK")
            raise
        await connection.exec_driver_sql("COMMIT")
    finally:
        await connection.exec_driver_sql("PRAGMA foreign_keys=ON")


class ForeignKeyViolation(RuntimeError):
    """After a migration, rows point at rows that do not exist (nothing was committed)."""


def _check_foreign_keys(connection: Connection) -> None:
    found = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
    if found:
        tables = sorted({f"{row[0]} → {row[2]}" for row in found})
        raise ForeignKeyViolation(
            f"the schema migration left {len(found)} row(s) pointing at missing rows "
            f"({', '.join(tables)}); it was rolled back and the database is unchanged"
        )


async def schema_revision(engine: AsyncEngine) -> str | None:
    """The revision the database's schema is at; None before the first migration."""
    async with engine.connect() as connection:
        try:
            found = await connection.scalar(text("SELECT version_num FROM alembic_version"))
        except exc.DBAPIError:
            return None
        return None if found is None else str(found)


def _upgrade_to_head(connection: Connection) -> None:
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    from bot.store.schema import alembic_config, refuse_unknown_revision

    config = alembic_config()
    refuse_unknown_revision(MigrationContext.configure(connection).get_current_revision())
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


# --------------------------------------------------------------------------- health

_DRIVER_MODULES = ("sqlalchemy", "asyncpg", "aiosqlite", "sqlite3")
_OUTAGE_ERRORS = (
    exc.OperationalError,
    exc.InterfaceError,
    exc.DisconnectionError,
    exc.TimeoutError,
)


def is_database_outage(error: BaseException) -> bool:
    """The database could not be reached or dropped the connection (not a bug in a query).

    asyncpg raises plain `OSError`s (connection refused, timeouts) from its own code, so an
    `OSError` counts when it was raised inside database driver code.
    """
    if isinstance(error, _OUTAGE_ERRORS):
        return True
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, OSError):
        return any(
            str(frame.f_globals.get("__name__", "")).startswith(_DRIVER_MODULES)
            for frame, _ in traceback.walk_tb(error.__traceback__)
        )
    return False


class DatabaseTrouble(Enum):
    """Why the database does not answer: the log lines that start and end it."""

    UNREACHABLE = ("database unreachable", "database reachable again")
    """The server is down or away: connections fail or break."""
    BUSY = (
        "database busy: every pooled connection stayed in use",
        "database connections free again",
    )
    """The server answers, but every connection of this process's pool stayed in use for the
    pool's whole timeout (load, or a slow database): more connections or more processes help,
    not a look at the network."""

    def __init__(self, start: str, end: str) -> None:
        self.start = start
        self.end = end

    @classmethod
    def of(cls, error: BaseException) -> DatabaseTrouble:
        return cls.BUSY if isinstance(error, exc.TimeoutError) else cls.UNREACHABLE


class DatabaseHealth:
    """Whether the database answers, told to the log once per change rather than per failure.

    While the database is away (or, `DatabaseTrouble.BUSY`, every pooled connection is taken),
    every ack, scan and health check fails; an operator needs one line when it starts and one
    when it ends, not a traceback for each. Failures are reported with `failed`; any statement
    that completes (an engine event) marks the database back.
    """

    def __init__(self) -> None:
        self.down_since: float | None = None
        self.trouble: DatabaseTrouble | None = None
        self.failures = 0

    @property
    def up(self) -> bool:
        return self.down_since is None

    def failed(self, error: BaseException, *, where: str) -> None:
        self.failures += 1
        if self.down_since is not None:
            log.debug("database still not answering (%s: %s)", where, _describe(error))
            return
        self.down_since = time.monotonic()
        self.trouble = DatabaseTrouble.of(error)
        log.warning(
            "%s (%s: %s): Slack events are refused, so Slack redelivers them, until it "
            "answers again",
            self.trouble.start,
            where,
            _describe(error),
        )

    def answered(self) -> None:
        if self.down_since is None:
            return
        log.info(
            "%s after %.1f s (%d operations failed meanwhile)",
            (self.trouble or DatabaseTrouble.UNREACHABLE).end,
            time.monotonic() - self.down_since,
            self.failures,
        )
        self.down_since = None
        self.trouble = None
        self.failures = 0

    def report(self, logger: logging.Logger, error: BaseException, message: str) -> None:
        """Log an error from work that touched the database: an outage goes to the tracker
        (one line per outage), anything else is logged with its traceback as before."""
        if is_database_outage(error):
            self.failed(error, where=message)
        else:
            logger.error(message, exc_info=error)


_HEALTH: weakref.WeakKeyDictionary[Engine, DatabaseHealth] = weakref.WeakKeyDictionary()


def database_health(engine: AsyncEngine, *, shared: DatabaseHealth | None = None) -> DatabaseHealth:
    """The one tracker of this engine's database (created with the engine); `shared`: the
    tracker of another engine on the same database (intake's engine shares the bot's)."""
    health = _HEALTH.get(engine.sync_engine)
    return health if health is not None else _track(engine.sync_engine, shared or DatabaseHealth())


def _track(sync_engine: Engine, health: DatabaseHealth) -> DatabaseHealth:
    _HEALTH[sync_engine] = health

    def answered(*_: Any) -> None:
        health.answered()

    event.listen(sync_engine, "after_cursor_execute", answered)
    return health


HEALTH_CHECK_TIMEOUT_S = 2.0
"""How long a health check waits for the database (a pooled connection included): answer work
may queue up to 30 s for a connection, a health probe must not."""


async def database_answers(engine: AsyncEngine) -> bool:
    """`SELECT 1` for health checks; a failure is told to the tracker, not logged each time."""
    try:
        async with asyncio.timeout(HEALTH_CHECK_TIMEOUT_S), engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except TimeoutError as error:
        database_health(engine).failed(error, where="health check")
        return False
    except Exception as error:
        if not is_database_outage(error):
            log.exception("health check: the database query failed")
            return False
        database_health(engine).failed(error, where="health check")
        return False
    return True


def _describe(error: BaseException) -> str:
    reason = getattr(error, "orig", None) or error
    first_line = (str(reason).splitlines() or [""])[0][:160]
    return f"{type(reason).__name__}: {first_line}" if first_line else type(reason).__name__
