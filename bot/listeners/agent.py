"""Slack's Agent messaging experience (`agent_view`): the DM is the agent's window.

Opening the DM (`app_home_opened` on the Messages tab) greets once and offers the suggested
prompts; `app_context_changed` remembers the channel the person has in view, passed to the
assistant with their next questions. Each top-level DM starts its own thread
(`ConversationService.accept_dm`).
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.conversation import ConversationService
from bot.listeners.messages import team_of
from bot.settings import Settings
from bot.slack.errors import best_effort

log = logging.getLogger(__name__)

CHANNEL_ENTITY = "slack#/types/channel_id"


def viewed_channel(event: dict[str, Any]) -> str | None:
    """The most relevant channel in an `app_context_changed` context (entities come ordered
    by relevance); None when the person has no channel in view."""
    entities = (event.get("context") or {}).get("entities") or []
    for entity in entities:
        if isinstance(entity, dict) and entity.get("type") == CHANNEL_ENTITY:
            value = entity.get("value")
            if isinstance(value, str) and value:
                return value
    return None


def register(app: AsyncApp, service: ConversationService, settings: Settings) -> None:
    async def messages_tab(event: dict[str, Any]) -> bool:
        return event.get("tab") == "messages"

    async def on_dm_opened(client: Any, body: dict[str, Any], event: dict[str, Any]) -> None:
        channel_id, user_id = str(event.get("channel") or ""), str(event.get("user") or "")
        if not channel_id or not user_id:
            return
        async with best_effort("the DM greeting failed", logger=log):
            if settings.suggested_prompts:
                prompts = [{"title": p, "message": p} for p in settings.suggested_prompts]
                await client.assistant_threads_setSuggestedPrompts(
                    channel_id=channel_id, prompts=prompts
                )
            if await service.greet_once(team_of(body, event), user_id):
                await client.chat_postMessage(channel=channel_id, text=settings.assistant_greeting)

    async def on_context_changed(body: dict[str, Any], event: dict[str, Any]) -> None:
        user_id = str(event.get("user") or body.get("user_id") or "")
        if user_id:
            await service.note_user_context(team_of(body, event), user_id, viewed_channel(event))

    app.event("app_home_opened", matchers=[messages_tab])(on_dm_opened)
    app.event("app_context_changed")(on_context_changed)
