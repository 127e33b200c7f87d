"""👍/👎 buttons under answers."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.conversation import ConversationService
from bot.replies import FEEDBACK_ACTION_ID


def register(app: AsyncApp, service: ConversationService) -> None:
    async def on_feedback(ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        turn_id, _, value = str(action.get("value", "")).partition(":")
        if not (turn_id.isdigit() and value in FEEDBACK_ACTION_ID):
            return
        message = body.get("message") or {}
        await service.record_feedback(
            turn_id=int(turn_id),
            user_id=str((body.get("user") or {}).get("id", "")),
            value=value,
            channel_id=str((body.get("channel") or {}).get("id", "")),
            thread_ts=str(message.get("thread_ts") or message.get("ts") or ""),
        )

    for action_id in FEEDBACK_ACTION_ID.values():
        app.action(action_id)(on_feedback)
