"""Slack's assistant pane: greeting and suggested prompts, messages, the channel in view."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncAssistant
from slack_bolt.request.internals import extract_enterprise_id

from bot.conversation import ConversationService
from bot.listeners.messages import incoming, is_from_person, team_of
from bot.settings import Settings


def register(app: AsyncApp, service: ConversationService, settings: Settings) -> None:
    assistant = AsyncAssistant()

    async def remember_context(body: dict[str, Any], event: dict[str, Any]) -> None:
        """The channel the user is looking at, passed to the assistant with each question."""
        thread = event.get("assistant_thread") or {}
        await service.note_context_channel(
            team_of(body, event),
            thread.get("channel_id", ""),
            thread.get("thread_ts", ""),
            (thread.get("context") or {}).get("channel_id"),
            enterprise_id=extract_enterprise_id(body),
        )

    @assistant.thread_started
    async def greet(
        say: Any, set_suggested_prompts: Any, body: dict[str, Any], event: dict[str, Any]
    ) -> None:
        await remember_context(body, event)
        await say(settings.assistant_greeting)
        if settings.suggested_prompts:
            prompts = [
                {"title": prompt, "message": prompt} for prompt in settings.suggested_prompts
            ]
            await set_suggested_prompts(prompts=prompts)

    assistant.thread_context_changed(remember_context)

    @assistant.user_message
    async def on_user_message(body: dict[str, Any], event: dict[str, Any]) -> None:
        if is_from_person(event):
            await service.accept(incoming(body, event, surface="assistant"))

    app.use(assistant)
