"""A workspace's token (OAuth mode): looked up by workspace, or by organisation for an
org-wide (Enterprise Grid) install, cached for a minute, and refreshed before it expires when
token rotation is on (bot/slack_tokens.py): one process refreshes, and every other process
(and every other task here) then reads the new token. An uninstall removes the installation
and ends the workspace's work (bot/installations/uninstall.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.async_authorize import AsyncAuthorize
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.sqlalchemy import SQLAlchemyInstallationStore
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.crypto import TokenCipher
from bot.installations.keys import TeamAuth, TeamKey
from bot.installations.stores import InstallationStore
from bot.installations.uninstall import delete_team_data, end_work
from bot.slack_tokens import NotInstalled, Refresher, RefreshRefused
from bot.store.models import Conversation

log = logging.getLogger(__name__)

CACHE_S = 60.0
"""How long a looked-up token is used without asking the database again (a token another
process refreshed stays valid until it expires, hours later)."""


class Workspaces:
    """Tokens per workspace, from the installation store, refreshed before they expire."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        client_id: str,
        client_secret: str,
        make_client: Callable[[str], AsyncWebClient],
        refresh_minutes: int = 120,
        clock: Callable[[], float] = time.time,
        cipher: TokenCipher,
    ) -> None:
        self.engine = engine
        self.client_id = client_id
        self._make_client = make_client
        self._refresh_s = refresh_minutes * 60
        self._clock = clock
        self.store = InstallationStore(
            client_id=client_id, engine=engine, logger=log, cipher=cipher
        )
        self.store.on_save = self.forget
        self._cache: dict[TeamKey, tuple[TeamAuth, float]] = {}
        self._organisations: dict[str, str] = {}
        self._refresher = Refresher(
            engine,
            self.store.bots,
            self.store.installations,
            client_id=client_id,
            client_secret=client_secret,
            oauth_client=make_client(""),
            expiring=self._expiring,
            clock=clock,
        )

    # Looking up --------------------------------------------------------------------------

    async def auth_for(self, key: TeamKey) -> TeamAuth:
        """The bot's token and ids for the workspace; `NotInstalled` when there is none."""
        cached = self._cache.get(key)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        if key.team_id and key.enterprise_id:
            self._organisations[key.team_id] = key.enterprise_id
        bot = await self._find(key)
        if bot is None:
            self._cache.pop(key, None)
            raise NotInstalled(f"no installation for team {key.team_id}")
        if self._expiring(bot):
            bot = await self._refresher.refresh(bot)
        auth = TeamAuth(
            client=self._make_client(str(bot.bot_token)),
            bot_user_id=str(bot.bot_user_id or ""),
            bot_id=str(bot.bot_id or ""),
            enterprise_id=bot.enterprise_id,
            is_enterprise_install=bool(bot.is_enterprise_install),
        )
        until = time.monotonic() + CACHE_S
        if bot.bot_token_expires_at is not None:
            until = min(until, time.monotonic() + self._seconds_left(bot) - self._refresh_s)
        self._cache[key] = (auth, until)
        return auth

    async def _find(self, key: TeamKey) -> Bot | None:
        """The workspace's own installation, else its organisation's org-wide one.

        A workspace named without its organisation (a stored conversation or a payload that
        carries only the team) is looked up by the workspace alone, then under the
        organisation it is known to belong to (see `_organisation_of`)."""
        if key.team_id and key.enterprise_id is None:
            return await self._find_by_team(key.team_id)
        bot: Bot | None = None
        if key.team_id:
            bot = await self.store.async_find_bot(
                enterprise_id=key.enterprise_id, team_id=key.team_id
            )
        if bot is None and key.enterprise_id:
            bot = await self.store.async_find_bot(
                enterprise_id=key.enterprise_id, team_id=None, is_enterprise_install=True
            )
        return bot

    async def _find_by_team(self, team_id: str) -> Bot | None:
        bots = self.store.bots
        c = bots.c
        async with self.engine.connect() as connection:
            row = (
                (
                    await connection.execute(
                        bots.select()
                        .where(
                            c.client_id == self.client_id,
                            c.team_id == team_id,
                            c.bot_token.is_not(None),
                        )
                        .order_by(c.installed_at.desc())
                        .limit(1)
                    )
                )
                .mappings()
                .first()
            )
        if row is not None:
            found: Bot = SQLAlchemyInstallationStore.build_bot_entity(row)
            return found
        organisation = await self._organisation_of(team_id)
        if organisation is None:
            return None
        return await self.store.async_find_bot(
            enterprise_id=organisation, team_id=None, is_enterprise_install=True
        )

    async def _organisation_of(self, team_id: str) -> str | None:
        """The Enterprise Grid organisation a workspace belongs to, as far as the bot knows:
        from an earlier lookup that named both, else from the conversations it stored there
        (each stored with the organisation its event named)."""
        known = self._organisations.get(team_id)
        if known is not None:
            return known
        async with self.engine.connect() as connection:
            found = await connection.scalar(
                sa.select(Conversation.enterprise_id)
                .where(Conversation.team_id == team_id, Conversation.enterprise_id.is_not(None))
                .limit(1)
            )
        if found is not None:
            self._organisations[team_id] = str(found)
        return None if found is None else str(found)

    async def installation_for(self, key: TeamKey) -> TeamKey | None:
        """Which installation answers for `key`: the workspace's own, or its organisation's
        (then named by the organisation alone); None when there is none."""
        bot = await self._find(key)
        if bot is None:
            return None
        if bot.is_enterprise_install or not bot.team_id:
            return TeamKey("", bot.enterprise_id)
        return TeamKey(bot.team_id, bot.enterprise_id)

    async def authorize(
        self, enterprise_id: str | None, team_id: str | None
    ) -> AuthorizeResult | None:
        """Bolt's `authorize` in OAuth mode: the installation for the event's workspace."""
        try:
            auth = await self.auth_for(TeamKey(team_id or "", enterprise_id))
        except RefreshRefused:
            return None  # told at ERROR where Slack refused it
        except NotInstalled:
            log.warning(
                "an event from a workspace where the bot is not installed",
                extra={"fields": {"team": team_id}},
            )
            return None
        return AuthorizeResult(
            enterprise_id=enterprise_id,
            team_id=team_id,
            bot_token=auth.token,
            bot_id=auth.bot_id,
            bot_user_id=auth.bot_user_id,
        )

    def forget(self, key: TeamKey | None = None) -> None:
        """Drop cached tokens (one workspace's, or all) so the next use reads the store.
        For an organisation (no team), every token cached from its org-wide install goes,
        whichever way the workspace using it was named."""
        if key is None:
            self._cache.clear()
            return
        for cached, (auth, _) in list(self._cache.items()):
            same_team = key.team_id and cached.team_id == key.team_id
            same_org = key.enterprise_id in (cached.enterprise_id, auth.enterprise_id)
            if same_team or (not key.team_id and key.enterprise_id and same_org):
                self._cache.pop(cached, None)

    # Token rotation ----------------------------------------------------------------------

    def _seconds_left(self, bot: Bot) -> float:
        return float(bot.bot_token_expires_at or 0) - self._clock()

    def _expiring(self, bot: Bot) -> bool:
        return bot.bot_token_expires_at is not None and self._seconds_left(bot) <= self._refresh_s

    # Uninstalling ------------------------------------------------------------------------

    async def remove(self, key: TeamKey, *, delete_data: bool) -> None:
        """The workspace uninstalled the bot (or revoked its token): its installation goes,
        its unfinished work ends without anything more shown, and with `delete_data` its
        conversations, usage and settings go too."""
        team_id = key.team_id or None
        await self.store.async_delete_bot(enterprise_id=key.enterprise_id, team_id=team_id)
        await self.store.async_delete_installation(enterprise_id=key.enterprise_id, team_id=team_id)
        self.forget(key)
        own = self._own_installs(key)
        await end_work(self.engine, key, spared=own)
        if delete_data:
            await delete_team_data(self.engine, key, spared=own)
        team = key.team_id or key.enterprise_id
        log.info("a workspace uninstalled the bot", extra={"fields": {"team": team}})

    def _own_installs(self, key: TeamKey) -> Any:
        """For an organisation's removal: its workspaces that have installed the bot on
        their own, which keep their conversations and their work."""
        c = self.store.bots.c
        return sa.select(c.team_id).where(
            c.client_id == self.client_id,
            c.enterprise_id == key.enterprise_id,
            c.team_id.is_not(None),
        )

    async def close(self) -> None:
        self._cache.clear()


class WorkspaceAuthorize(AsyncAuthorize):
    """Bolt's authorization in OAuth mode, through `Workspaces` (its cache, its one shared
    refresh); an `AsyncAuthorize` so that Bolt takes it together with the OAuth flow."""

    def __init__(self, workspaces: Workspaces) -> None:
        self._workspaces = workspaces

    async def __call__(
        self,
        *,
        context: Any,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None,
        actor_enterprise_id: str | None = None,
        actor_team_id: str | None = None,
        actor_user_id: str | None = None,
    ) -> AuthorizeResult | None:
        return await self._workspaces.authorize(enterprise_id, team_id)
