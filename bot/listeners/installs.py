"""OAuth mode: a workspace that uninstalls the bot, or revokes its token, is let go."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.assistants.base import AssistantBackend
from bot.installations import Workspaces, uninstalled
from bot.remote_deletions import delete_recorded
from bot.settings import Settings

log = logging.getLogger(__name__)


def register(
    app: AsyncApp, workspaces: Workspaces, settings: Settings, *, backend: AssistantBackend
) -> None:
    deleting: set[asyncio.Task[Any]] = set()

    async def let_go(context: Any) -> None:
        named = uninstalled(
            team_id=context.team_id,
            enterprise_id=context.enterprise_id,
            org_wide=bool(context.is_enterprise_install),
        )
        # The installation that answered there: the workspace's own, or (for a workspace
        # named without its organisation, or one with no install of its own) the org's.
        key = await workspaces.installation_for(named) or named
        await workspaces.remove(key, delete_data=settings.delete_data_on_uninstall)
        if settings.delete_data_on_uninstall:
            # After the ack: OpenAI may be slow; what fails stays recorded for `purge`.
            task = asyncio.create_task(delete_recorded(workspaces.engine, backend))
            deleting.add(task)
            task.add_done_callback(deleting.discard)

    async def on_uninstalled(context: Any) -> None:
        await let_go(context)

    async def on_tokens_revoked(event: dict[str, Any], context: Any) -> None:
        if (event.get("tokens") or {}).get("bot"):
            await let_go(context)

    app.event("app_uninstalled")(on_uninstalled)
    app.event("tokens_revoked")(on_tokens_revoked)
