"""OAuth mode: a workspace that uninstalls the bot, or revokes its token, is let go."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.installations import TeamKey, Workspaces
from bot.settings import Settings

log = logging.getLogger(__name__)


def register(app: AsyncApp, workspaces: Workspaces, settings: Settings) -> None:
    async def let_go(context: Any) -> None:
        enterprise_id = context.enterprise_id
        org_wide = bool(context.is_enterprise_install)
        team_id = "" if org_wide else str(context.team_id or "")
        await workspaces.remove(
            TeamKey(team_id, enterprise_id), delete_data=settings.delete_data_on_uninstall
        )

    async def on_uninstalled(context: Any) -> None:
        await let_go(context)

    async def on_tokens_revoked(event: dict[str, Any], context: Any) -> None:
        if (event.get("tokens") or {}).get("bot"):
            await let_go(context)

    app.event("app_uninstalled")(on_uninstalled)
    app.event("tokens_revoked")(on_tokens_revoked)
