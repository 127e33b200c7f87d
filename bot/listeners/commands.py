"""`/assistant`: a channel's own settings, its usage, its budget (replies only to the caller)."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.admin.service import AdminService, CommandContext

log = logging.getLogger(__name__)

COMMAND = "/assistant"


def register(app: AsyncApp, admin: AdminService) -> None:
    async def on_assistant(ack: Any, command: dict[str, Any], client: AsyncWebClient) -> None:
        context = CommandContext(
            team_id=str(command.get("team_id") or ""),
            channel_id=str(command.get("channel_id") or ""),
            user_id=str(command.get("user_id") or ""),
            enterprise_id=command.get("enterprise_id") or None,
        )
        parsed = admin.parse(str(command.get("text") or ""), context)
        is_admin = parsed.action.changes_settings and await admin.is_admin(
            client, context.user_id, team_id=context.team_id
        )
        reply = await admin.run_command(parsed, context, is_admin=is_admin)
        # The ack's own body is the reply: Slack shows it to the caller only (ephemeral).
        await ack(response_type="ephemeral", text=reply)

    app.command(COMMAND)(on_assistant)
