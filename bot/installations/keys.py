"""Which installation answers for a workspace, and the bot as it is there."""

from __future__ import annotations

from dataclasses import dataclass

from slack_sdk.web.async_client import AsyncWebClient


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
