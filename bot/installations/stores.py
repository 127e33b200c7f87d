"""Where installations and OAuth states are kept (OAuth mode).

Installations live in the bot's own database, in the tables slack_sdk's SQLAlchemy
installation store uses (created by migration 0006), with their tokens encrypted at rest, so
Bolt's OAuth flow stores them and `Workspaces` reads them. OAuth `state` values are signed
and consumed once.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from typing import Any

from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.sqlalchemy import AsyncSQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore
from slack_sdk.oauth.state_store.sqlalchemy import AsyncSQLAlchemyOAuthStateStore
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.crypto import TokenCipher, with_encrypted_tokens
from bot.installations.keys import TeamKey
from bot.oauth_states import MAX_OUTSTANDING_STATES, tidy_states

log = logging.getLogger(__name__)

STATE_EXPIRATION_S = 600


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
