"""Allow/Deny buttons under a tool call that waits for the asker's approval."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext

from bot.conversation import ConversationService
from bot.tools.approvals import ALLOW_ACTION, DENY_ACTION


def register(app: AsyncApp, service: ConversationService) -> None:
    async def on_click(
        ack: Any, body: dict[str, Any], action: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        await ack()
        value = str(action.get("value", ""))
        if not value.isdigit():
            return
        message = body.get("message") or {}
        await service.decide_tool_call(
            approval_id=int(value),
            user_id=str((body.get("user") or {}).get("id", "")),
            allowed=action.get("action_id") == ALLOW_ACTION,
            channel_id=str((body.get("channel") or {}).get("id", "")),
            thread_ts=str(message.get("thread_ts") or message.get("ts") or ""),
            team_id=str(context.team_id or ""),
            enterprise_id=context.enterprise_id,
        )

    app.action(ALLOW_ACTION)(on_click)
    app.action(DENY_ACTION)(on_click)
