"""Installations in many workspaces (OAuth mode): who the bot is in each workspace, with
which token, and how that token is kept fresh.

Installations live in the bot's own database, in the tables slack_sdk's SQLAlchemy
installation store uses (created by migration 0006), so Bolt's OAuth flow stores them and
this module reads them. A token is looked up by workspace, or by organisation for an
org-wide (Enterprise Grid) install, cached for a minute, and refreshed before it expires when
token rotation is on (bot/slack_tokens.py): one process refreshes, and every other process
(and every other task here) then reads the new token.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import sqlalchemy as sa
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.async_authorize import AsyncAuthorize
from slack_bolt.oauth.async_oauth_flow import AsyncOAuthFlow
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.sqlalchemy import (
    AsyncSQLAlchemyInstallationStore,
    SQLAlchemyInstallationStore,
)
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore
from slack_sdk.oauth.state_store.sqlalchemy import AsyncSQLAlchemyOAuthStateStore
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.crypto import TokenCipher, with_encrypted_tokens
from bot.oauth_pages import INSTALL_CALLBACKS, InstallPagesFlow
from bot.oauth_states import MAX_OUTSTANDING_STATES, tidy_states
from bot.slack_tokens import NotInstalled, Refresher, RefreshRefused
from bot.store.models import Conversation, Feedback, InboxMessage, Turn
from bot.turns.states import Outcome, TurnStatus

log = logging.getLogger(__name__)

CACHE_S = 60.0
"""How long a looked-up token is used without asking the database again (a token another
process refreshed stays valid until it expires, hours later)."""
STATE_EXPIRATION_S = 600


@dataclass(frozen=True)
class TeamKey:
    """Which installation answers for a workspace: its own, or its organisation's."""

    team_id: str
    enterprise_id: str | None = None


@dataclass(frozen=True)
class TeamAuth:
    """The bot in one workspace: the client carrying its token, and its own ids there."""

    client: AsyncWebClient
    bot_user_id: str
    bot_id: str
    enterprise_id: str | None
    is_enterprise_install: bool

    @property
    def token(self) -> str:
        return str(self.client.token)


class InstallationStore(AsyncSQLAlchemyInstallationStore):
    """slack_sdk's async SQLAlchemy store on the bot's engine; the tables come from the
    bot's migrations, never from `create_tables`. A saved installation (a new install, or a
    reinstall with a new token) replaces what this process had cached for the workspace."""

    on_save: Callable[[TeamKey], None] | None = None

    def __init__(self, *, cipher: TokenCipher, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Every statement on these tables, the SDK's and the bot's, encrypts the tokens.
        self.bots = with_encrypted_tokens(self.bots, cipher)
        self.installations = with_encrypted_tokens(self.installations, cipher)

    async def create_tables(self) -> None:  # pragma: no cover - the migrations do this
        raise NotImplementedError("the tables are created by the bot's migrations")

    async def async_save_bot(self, bot: Bot) -> None:
        await super().async_save_bot(bot)
        if self.on_save is not None:
            self.on_save(TeamKey(bot.team_id or "", bot.enterprise_id))


class SignedStateStore(AsyncOAuthStateStore):
    """OAuth `state` values: random, stored to be consumed once (across processes), and
    signed with SLACK_STATE_SECRET, so a forged or altered state is refused before the
    database is asked."""

    def __init__(
        self, engine: AsyncEngine, *, secret: str, keep: int = MAX_OUTSTANDING_STATES
    ) -> None:
        self._stored = AsyncSQLAlchemyOAuthStateStore(
            expiration_seconds=STATE_EXPIRATION_S, engine=engine, logger=log
        )
        self._secret = secret.encode()
        self._engine = engine
        self._keep = keep

    @property
    def logger(self) -> logging.Logger:
        return log

    def _sign(self, raw: str) -> str:
        return hmac.new(self._secret, raw.encode(), hashlib.sha256).hexdigest()[:32]

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        await tidy_states(self._engine, self._stored.oauth_states, keep=self._keep)
        raw = await self._stored.async_issue()
        return f"{raw}.{self._sign(raw)}"

    async def async_consume(self, state: str) -> bool:
        raw, _, signature = (state or "").rpartition(".")
        if not raw or not hmac.compare_digest(signature.encode(), self._sign(raw).encode()):
            return False
        return await self._stored.async_consume(raw)


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
        self, enterprise_id: str | None, team_id: str | None, context: Any = None
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


def authorize_url(slack_api_url: str) -> str:
    """Slack's consent page beside its Web API (https://slack.com/api/ →
    https://slack.com/oauth/v2/authorize), so SLACK_API_URL moves both."""
    return urljoin(slack_api_url, "../oauth/v2/authorize")


def build_oauth_flow(
    workspaces: Workspaces,
    *,
    client: AsyncWebClient,
    slack_api_url: str,
    scopes: tuple[str, ...],
    state_secret: str,
    client_secret: str,
    redirect_uri: str | None,
    delete_on_uninstall: bool = False,
) -> AsyncOAuthFlow:
    """`GET /slack/install` (the page with the Add to Slack button) and
    `GET /slack/oauth_redirect` (Slack sends the installer back with a code, exchanged at
    `oauth.v2.access` through `client`, so SLACK_API_URL is honoured)."""
    settings = AsyncOAuthSettings(
        client_id=workspaces.client_id,
        client_secret=client_secret,
        scopes=list(scopes),
        user_scopes=[],
        redirect_uri=redirect_uri,
        authorization_url=authorize_url(slack_api_url),
        installation_store=workspaces.store,
        state_store=SignedStateStore(workspaces.engine, secret=state_secret),
        state_expiration_seconds=STATE_EXPIRATION_S,
        callback_options=INSTALL_CALLBACKS,
        logger=log,
    )
    return InstallPagesFlow(
        client=client, logger=log, settings=settings, delete_on_uninstall=delete_on_uninstall
    )


def _team_filter(key: TeamKey, spared: Any = None) -> Any:
    """The conversations of the workspace, or of every workspace of the organisation when an
    org-wide install is removed (but those of `spared`, its workspaces that installed the bot
    on their own)."""
    if key.team_id:
        return Conversation.team_id == key.team_id
    of_org = Conversation.enterprise_id == key.enterprise_id
    if spared is None:
        return of_org
    return sa.and_(of_org, Conversation.team_id.not_in(spared))


def uninstalled(*, team_id: str | None, enterprise_id: str | None, org_wide: bool) -> TeamKey:
    """Which installation an `app_uninstalled` or `tokens_revoked` names: the organisation's
    when the event says the install is org-wide or names no workspace of its own (no team,
    or the organisation's `E…` id in its place), else the workspace's."""
    team = team_id or ""
    if not enterprise_id and team.startswith("E"):
        return TeamKey("", team)
    if enterprise_id and (org_wide or not team or team == enterprise_id):
        return TeamKey("", enterprise_id)
    return TeamKey(team, enterprise_id)


async def end_work(engine: AsyncEngine, key: TeamKey, *, spared: Any = None) -> None:
    """Stop the workspace's work: open turns end without a reply, waiting messages are not
    answered, and every lease is fenced off (its generation moves on), so a process working
    on one of its conversations stops at its next step instead of posting."""
    now = time.time()
    ids = sa.select(Conversation.id).where(_team_filter(key, spared)).scalar_subquery()
    async with engine.begin() as connection:
        await connection.execute(
            sa.update(Turn)
            .where(Turn.conversation_id.in_(ids), Turn.status != "done")
            .values(status=TurnStatus.DONE, outcome=Outcome.UNINSTALLED, finished_at=now)
        )
        await connection.execute(
            sa.update(InboxMessage)
            .where(InboxMessage.conversation_id.in_(ids), InboxMessage.turn_id.is_(None))
            .values(refused=True)
        )
        await connection.execute(  # no turn of theirs runs again: their tokens are not needed
            sa.update(InboxMessage)
            .where(InboxMessage.conversation_id.in_(ids), InboxMessage.action_token.is_not(None))
            .values(action_token=None)
        )
        await connection.execute(
            sa.update(Conversation)
            .where(_team_filter(key, spared))
            .values(
                needs_attention=False,
                lease_owner=None,
                lease_until=None,
                lease_generation=Conversation.lease_generation + 1,
            )
        )


async def delete_team_data(engine: AsyncEngine, key: TeamKey, *, spared: Any = None) -> None:
    """Everything stored about the workspace: conversations, messages, answers, feedback,
    usage, channel settings and their history, the chat backend's messages, approvals and DM
    users; the conversations' OpenAI ids are kept in `remote_deletions` until deleted there
    (bot/remote_deletions.py)."""
    from bot.remote_deletions import forget_team_rows
    from bot.store.admin_models import ChannelSetting, SettingsChange, TurnUsage

    where = _team_filter(key, spared)
    ids = sa.select(Conversation.id).where(where).scalar_subquery()
    async with engine.begin() as connection:
        teams = [key.team_id]
        if not key.team_id:
            found = await connection.scalars(
                sa.select(Conversation.team_id).where(where).distinct()
            )
            teams = [str(team) for team in found]
        await forget_team_rows(connection, conversations=ids, where=where, teams=teams)
        turn_ids = sa.select(Turn.id).where(Turn.conversation_id.in_(ids))
        await connection.execute(sa.delete(Feedback).where(Feedback.turn_id.in_(turn_ids)))
        await connection.execute(
            sa.delete(InboxMessage).where(InboxMessage.conversation_id.in_(ids))
        )
        await connection.execute(sa.delete(Turn).where(Turn.conversation_id.in_(ids)))
        await connection.execute(sa.delete(Conversation).where(where))
        for model in (TurnUsage, ChannelSetting, SettingsChange):
            await connection.execute(sa.delete(model).where(model.team_id.in_(teams)))
