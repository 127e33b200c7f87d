"""SQLite transactions that never fail with "database is locked" between this process's
connections.

Intake writes on a connection of its own, beside the answer path's. SQLite lets one
connection write at a time. A transaction that starts by reading (SQLite's default
`BEGIN DEFERRED`) and then writes must upgrade its read lock, and when another connection
committed meanwhile the upgrade fails at once with "database is locked": the busy timeout
does not apply, since waiting could not help a transaction whose snapshot is already stale.
So every transaction that may write starts with `BEGIN IMMEDIATE`, which takes the write
lock first and waits for it (up to the busy timeout); read-only transactions start with a
plain `BEGIN` and, in WAL mode, never wait for a writer.

Which is which (`begin_statement`, a pure decision):

- a transaction begun explicitly (`engine.begin()`, `connection.begin()`,
  `sessions.begin()`) is meant to write: IMMEDIATE;
- one begun implicitly by its first statement (`engine.connect()` then `execute`, an ORM
  session used without `begin()`) is IMMEDIATE if that statement writes (INSERT, UPDATE,
  DELETE, or a SELECT ... FOR UPDATE, which SQLite does not render but which says the rows
  are about to be written), else a plain read. (`exec_driver_sql` statements are not seen
  before they begin a transaction, so theirs counts as begun explicitly.)

The recipe is SQLAlchemy's for pysqlite and aiosqlite ("Enabling Non-Legacy SQLite
Transactional Modes"): the driver's own transaction handling is turned off
(`isolation_level = None`) and the BEGIN is issued here, just before the transaction's
first statement, once it is known how the transaction began.
"""

from __future__ import annotations

import enum
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, SessionTransaction, SessionTransactionOrigin
from sqlalchemy.sql import CompoundSelect, Select, TextClause
from sqlalchemy.sql.dml import UpdateBase

_PENDING = "sqlite_begin_pending"
"""Connection info key: the BEGIN to issue before the transaction's first statement."""
_FIRST = "sqlite_first_statement"
"""Connection info key: the statement about to run outside a transaction (it autobegins)."""


class Begin(enum.Enum):
    READ = "BEGIN"
    WRITE = "BEGIN IMMEDIATE"


_READING_SQL = frozenset({"SELECT", "PRAGMA", "EXPLAIN", "VALUES"})


def writes(statement: object) -> bool:
    """Whether a statement writes or locks rows for writing; when unsure, it does."""
    if isinstance(statement, TextClause):
        statement = statement.text
    if isinstance(statement, str):
        words = statement.split(None, 1)
        return not words or words[0].upper() not in _READING_SQL
    if isinstance(statement, UpdateBase):
        return True
    if isinstance(statement, Select | CompoundSelect):
        return statement._for_update_arg is not None
    return True


def begin_statement(first_statement: object | None) -> Begin:
    """How a transaction starts: `first_statement` is the statement that began it
    implicitly, None when it was begun explicitly."""
    if first_statement is None or writes(first_statement):
        return Begin.WRITE
    return Begin.READ


def install(sync_engine: Any) -> None:
    """Take over BEGIN on a SQLite engine's connections (see the module's docstring)."""
    event.listen(sync_engine, "connect", _driver_leaves_transactions_to_us)
    event.listen(sync_engine, "checkout", _forget_first_statement)
    event.listen(sync_engine, "before_execute", _note_first_statement)
    event.listen(sync_engine, "begin", _decide_begin)
    event.listen(sync_engine, "before_cursor_execute", _issue_begin)
    if not event.contains(Session, "after_begin", _session_begin):
        event.listen(Session, "after_begin", _session_begin)


def _driver_leaves_transactions_to_us(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None


def _forget_first_statement(_dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    record.info.pop(_FIRST, None)
    record.info.pop(_PENDING, None)


def _note_first_statement(connection: Connection, statement: Any, *_: Any, **__: Any) -> None:
    if not connection.in_transaction():
        connection.info[_FIRST] = statement


def _decide_begin(connection: Connection) -> None:
    first = connection.info.pop(_FIRST, None)
    if connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
        connection.info.pop(_PENDING, None)
        return
    connection.info[_PENDING] = begin_statement(first)


def _session_begin(
    _session: Session, transaction: SessionTransaction, connection: Connection
) -> None:
    """An ORM session begins its connection's transaction itself, before the statement
    runs: only the session knows whether `begin()` was called (a write) or it autobegan."""
    if _PENDING in connection.info and transaction.origin is SessionTransactionOrigin.AUTOBEGIN:
        connection.info[_PENDING] = Begin.READ


def _issue_begin(connection: Connection, cursor: Any, statement: str, *_: Any, **__: Any) -> None:
    pending: Begin | None = connection.info.pop(_PENDING, None)
    if pending is None:
        return
    if pending is Begin.READ and writes(statement):
        pending = Begin.WRITE  # an autobegun ORM session whose first statement writes
    cursor.execute(pending.value)
