"""The off switch (`/assistant off`): a Bolt middleware in front of the message listeners.

While a channel is off, messages there are not stored or answered; a mention (or a DM) gets
one short ephemeral note saying so and who can turn the bot back on.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot.admin.service import AdminService, off_note
from bot.listeners.messages import is_from_person, team_of
from bot.slack.errors import best_effort

log = logging.getLogger(__name__)


def register(app: AsyncApp, admin: AdminService) -> None:
    async def channel_switch(
        body: dict[str, Any], client: AsyncWebClient, next: Callable[[], Awaitable[None]]
    ) -> BoltResponse | None:
        event = body.get("event") if body.get("type") == "event_callback" else None
        if (
            not isinstance(event, dict)
            or event.get("type") not in ("app_mention", "message")
            or not is_from_person(event)
            or await admin.is_enabled(team_of(body, event), str(event["channel"]))
        ):
            await next()
            return None
        if event["type"] == "app_mention" or event.get("channel_type") == "im":
            async with best_effort("the off note could not be posted", logger=log):
                await client.chat_postEphemeral(
                    channel=event["channel"],
                    user=event["user"],
                    text=off_note(admin.who_can_turn_on()),
                    thread_ts=event.get("thread_ts"),
                )
        return BoltResponse(status=200, body="")

    app.middleware(channel_switch)
