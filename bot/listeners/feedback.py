"""👍/👎 buttons under answers; a 👎 opens a small optional form asking what went wrong."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from sqlalchemy.exc import IntegrityError

from bot.admin.home_view import REASON_CALLBACK, reason_modal, submitted_reason
from bot.admin.service import AdminService
from bot.conversation import ConversationService
from bot.replies import FEEDBACK_ACTION_ID
from bot.slack.errors import best_effort

log = logging.getLogger(__name__)

FEEDBACK_GONE = (
    "Thanks! That answer is no longer stored (old conversations are deleted after a while), "
    "so I couldn't record your feedback on it."
)


def register(app: AsyncApp, service: ConversationService, admin: AdminService) -> None:
    async def on_feedback(
        ack: Any,
        body: dict[str, Any],
        action: dict[str, Any],
        client: Any,
        context: AsyncBoltContext,
    ) -> None:
        await ack()
        turn_id, _, value = str(action.get("value", "")).partition(":")
        if not (turn_id.isdigit() and value in FEEDBACK_ACTION_ID):
            return
        message = body.get("message") or {}
        user_id = str((body.get("user") or {}).get("id", ""))
        channel_id = str((body.get("channel") or {}).get("id", ""))
        thread_ts = str(message.get("thread_ts") or message.get("ts") or "")
        try:
            await service.record_feedback(
                turn_id=int(turn_id),
                user_id=user_id,
                value=value,
                channel_id=channel_id,
                thread_ts=thread_ts,
                team_id=context.team_id,
                enterprise_id=context.enterprise_id,
            )
        except IntegrityError:
            # The only reference a vote has is its answer (turn): retention purged it.
            log.info("feedback: turn %s no longer exists (purged); told the user", turn_id)
            if channel_id and user_id:
                await _tell_gone(client, channel_id=channel_id, user_id=user_id, ts=thread_ts)
            return
        if value == "down" and body.get("trigger_id"):  # ask what went wrong
            async with best_effort("the 👎 form could not open", logger=log):
                await client.views_open(
                    trigger_id=body["trigger_id"], view=reason_modal(int(turn_id))
                )

    async def on_reason(
        ack: Any, body: dict[str, Any], view: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        await ack()
        found = submitted_reason(view)
        if found is None:
            return
        turn_id, reason = found
        user_id = str((body.get("user") or {}).get("id", ""))
        await admin.store.set_feedback_reason(
            turn_id=turn_id,
            user_id=user_id,
            reason=reason,
            team_id=context.team_id if service.scoped_by_team else None,
        )
        log.info("feedback: turn %s got a 👎 reason", turn_id)

    for action_id in FEEDBACK_ACTION_ID.values():
        app.action(action_id)(on_feedback)
    app.view(REASON_CALLBACK)(on_reason)


async def _tell_gone(client: Any, *, channel_id: str, user_id: str, ts: str) -> None:
    async with best_effort("feedback: could not tell the user", logger=log):
        await client.chat_postEphemeral(
            channel=channel_id, user=user_id, text=FEEDBACK_GONE, thread_ts=ts or None
        )
