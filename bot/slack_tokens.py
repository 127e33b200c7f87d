"""A workspace's bot token: why there may be none, and refreshing it (token rotation).

A refresh is made once, whoever needs it at the same moment: in this process under a lock per
installation, across processes under a lock that is not a database transaction (PostgreSQL's
advisory lock on a connection of its own; beside a SQLite database, a lock file). No
transaction is open while Slack is asked, and the new token and refresh token are committed
in a short transaction of their own the moment Slack hands them out: Slack has then already
retired the old refresh token, so losing the new one would leave the workspace without a
token until it reinstalls the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from slack_sdk.errors import SlackApiError
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.sqlalchemy import SQLAlchemyInstallationStore
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot import metrics
from bot.slack.errors import SlackErrorKind, classify, error_code

log = logging.getLogger(__name__)

STORE_ATTEMPTS = 5
"""Tries at committing a refreshed token (a database that is briefly away comes back)."""
STORE_RETRY_S = 0.2
LOCK_POLL_S = 0.05


class TokenProblem(StrEnum):
    """Why no token can be had for a workspace."""

    NOT_INSTALLED = "not_installed"
    REFRESH_REFUSED = "refresh_refused"


class TokenUnavailable(Exception):
    """No token to act in a workspace with: nothing can be shown there."""

    reason = TokenProblem.NOT_INSTALLED


class NotInstalled(TokenUnavailable):
    """The workspace (or its organisation) has no installation: never installed, uninstalled,
    or its token was revoked."""


class RefreshRefused(TokenUnavailable):
    """Slack refused the installation's refresh token (`invalid_refresh_token`): the
    workspace is installed, but the bot cannot act there until the app is reinstalled."""

    reason = TokenProblem.REFRESH_REFUSED


class Refresher:
    """Refreshes an installation's expiring token once across tasks and processes."""

    def __init__(
        self,
        engine: AsyncEngine,
        bots: sa.Table,
        installations: sa.Table,
        *,
        client_id: str,
        client_secret: str,
        oauth_client: AsyncWebClient,
        expiring: Callable[[Bot], bool],
        clock: Callable[[], float],
    ) -> None:
        self._engine = engine
        self._bots = bots
        self._installations = installations
        self._client_id = client_id
        self._client_secret = client_secret
        self._oauth_client = oauth_client
        self._expiring = expiring
        self._clock = clock
        self._locks: dict[tuple[str | None, str | None], asyncio.Lock] = {}

    async def refresh(self, bot: Bot) -> Bot:
        """The installation's token, refreshed unless another task or process just did."""
        lock = self._locks.setdefault((bot.enterprise_id, bot.team_id), asyncio.Lock())
        async with lock, self._across_processes(bot) as held:
            found = await self._current(bot, held)
            if found is None:
                raise NotInstalled(f"no installation for team {bot.team_id or bot.enterprise_id}")
            row, current = found
            if not self._expiring(current):
                return current
            refreshed = await self._ask_slack(current)
            await self._store(row, current, refreshed, held)
            log.info("refreshed the bot token of team %s", bot.team_id or bot.enterprise_id)
            metrics.token_refresh("refreshed")
            return refreshed

    # Locks -------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _across_processes(self, bot: Bot) -> AsyncIterator[AsyncConnection | None]:
        """Held, the lock's own connection (PostgreSQL; the reads and writes of the refresh
        use it too, so many refreshes at once never wait on each other for the pool)."""
        name = f"slack-token-refresh:{self._client_id}:{bot.enterprise_id}:{bot.team_id}"
        if self._engine.dialect.name == "postgresql":
            async with _advisory_lock(self._engine, name) as connection:
                yield connection
            return
        database = self._engine.url.database
        if not database or database == ":memory:":
            yield None  # one process only
            return
        async with _file_lock(f"{database}.token-refresh.lock"):
            yield None

    # The database ------------------------------------------------------------------------

    def _same(self, bot: Bot) -> Any:
        c = self._bots.c
        return sa.and_(
            c.client_id == self._client_id,
            c.enterprise_id == bot.enterprise_id,
            c.team_id == bot.team_id,
        )

    async def _current(
        self, bot: Bot, held: AsyncConnection | None
    ) -> tuple[sa.RowMapping, Bot] | None:
        """The installation's newest stored token (another process may have refreshed it)."""
        c = self._bots.c
        async with _connection(self._engine, held) as connection:
            row = (
                (
                    await connection.execute(
                        self._bots.select()
                        .where(self._same(bot), c.bot_token.is_not(None))
                        .order_by(c.installed_at.desc())
                        .limit(1)
                    )
                )
                .mappings()
                .first()
            )
            await connection.commit()  # no transaction stays open while Slack is asked
        if row is None:
            return None
        current: Bot = SQLAlchemyInstallationStore.build_bot_entity(row)
        return row, current

    async def _store(
        self, row: sa.RowMapping, current: Bot, refreshed: Bot, held: AsyncConnection | None
    ) -> None:
        """Commit the new tokens at once, in a short transaction of their own; tried again
        while the database is away. If it never comes back this process keeps the token (its
        cache) and an operator is told."""
        values = {
            "bot_token": refreshed.bot_token,
            "bot_refresh_token": refreshed.bot_refresh_token,
            "bot_token_expires_at": _db_time(refreshed.bot_token_expires_at),
        }
        i = self._installations.c
        for attempt in range(STORE_ATTEMPTS):
            # A failed write is tried again on a new connection (the held one may be gone).
            try:
                async with _connection(self._engine, held if attempt == 0 else None) as connection:
                    await connection.execute(
                        self._bots.update().where(self._bots.c.id == row["id"]).values(**values)
                    )
                    await connection.execute(
                        self._installations.update()
                        .where(
                            i.client_id == self._client_id,
                            i.enterprise_id == current.enterprise_id,
                            i.team_id == current.team_id,
                            # Not the token: stored encrypted, it compares to nothing.
                            i.installed_at == row["installed_at"],
                        )
                        .values(**values)
                    )
                    await connection.commit()
                return
            except (SQLAlchemyError, OSError) as exc:
                if attempt == 0 and held is not None:
                    with contextlib.suppress(SQLAlchemyError, OSError):
                        await held.rollback()
                log.warning(
                    "team %s: the refreshed token could not be stored (%s); trying again",
                    current.team_id or current.enterprise_id,
                    type(exc).__name__,
                )
                await asyncio.sleep(STORE_RETRY_S * 2**attempt)
        log.error(
            "team %s: the refreshed bot token could not be stored; this process keeps using "
            "it, but others cannot, and once it stops the app must be reinstalled there",
            current.team_id or current.enterprise_id,
        )
        metrics.token_refresh("not_stored")

    # Slack -------------------------------------------------------------------------------

    async def _ask_slack(self, bot: Bot) -> Bot:
        team = bot.team_id or bot.enterprise_id
        try:
            response = await self._oauth_client.oauth_v2_access(
                client_id=self._client_id,
                client_secret=self._client_secret,
                grant_type="refresh_token",
                refresh_token=str(bot.bot_refresh_token),
            )
        except SlackApiError as exc:
            error = error_code(exc)
            if classify(exc) is SlackErrorKind.APP_GONE:
                raise NotInstalled(f"team {team}: refresh refused ({error})") from None
            if error == "invalid_refresh_token":
                log.error(
                    "team %s: Slack refused the stored refresh token (%s); the bot cannot "
                    "act there until the app is reinstalled",
                    team,
                    error,
                )
                metrics.token_refresh("refused")
                raise RefreshRefused(f"team {team}: refresh token refused ({error})") from None
            raise
        refreshed = Bot(**bot.to_dict_for_copying())
        refreshed.bot_token = response["access_token"]
        refreshed.bot_refresh_token = response.get("refresh_token") or bot.bot_refresh_token
        refreshed.bot_token_expires_at = int(self._clock()) + int(response["expires_in"])
        return refreshed


@contextlib.asynccontextmanager
async def _connection(
    engine: AsyncEngine, held: AsyncConnection | None
) -> AsyncIterator[AsyncConnection]:
    """`held` when given (left open), else a connection of the pool for this use only."""
    if held is not None:
        yield held
        return
    async with engine.connect() as connection:
        yield connection


@contextlib.asynccontextmanager
async def _advisory_lock(engine: AsyncEngine, name: str) -> AsyncIterator[AsyncConnection]:
    """PostgreSQL's session-level advisory lock on a connection of its own: held across
    transactions (none stays open), released at the end or when the connection dies."""
    key = sa.text("SELECT pg_advisory_lock(hashtext(:name))")
    async with engine.connect() as connection:
        await connection.execute(key, {"name": name})
        await connection.commit()
        try:
            yield connection
        finally:
            try:
                await connection.rollback()
                await connection.execute(
                    sa.text("SELECT pg_advisory_unlock(hashtext(:name))"), {"name": name}
                )
                await connection.commit()
            except (SQLAlchemyError, OSError):
                await connection.invalidate()  # closing the session releases the lock


@contextlib.asynccontextmanager
async def _file_lock(path: str) -> AsyncIterator[None]:
    """An exclusive lock on a file beside the SQLite database (which every process using it
    shares), waited for without blocking the event loop."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(LOCK_POLL_S)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _db_time(epoch: int | float | None) -> datetime | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, tz=UTC).replace(tzinfo=None)
