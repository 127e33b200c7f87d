"""`/assistant`: a channel's own settings, its usage, its budget (replies only to the caller)."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from bot.admin.service import AdminService, CommandContext

log = logging.getLogger(__name__)

COMMAND = "/assistant"


def register(app: AsyncApp, admin: AdminService) -> None:
    async def on_assistant(
        ack: Any, command: dict[str, Any], client: AsyncWebClient, context: AsyncBoltContext
    ) -> None:
        invocation = CommandContext(
            team_id=str(context.team_id or ""),
            channel_id=str(context.channel_id or ""),
            user_id=str(context.user_id or ""),
            enterprise_id=context.enterprise_id,
        )
        parsed = admin.parse(str(command.get("text") or ""), invocation)
        is_admin = parsed.action.changes_settings and await admin.is_admin(
            client, invocation.user_id, team_id=invocation.team_id
        )
        reply = await admin.run_command(parsed, invocation, is_admin=is_admin)
        # The ack's own body is the reply: Slack shows it to the caller only (ephemeral).
        await ack(response_type="ephemeral", text=reply)

    app.command(COMMAND)(on_assistant)
