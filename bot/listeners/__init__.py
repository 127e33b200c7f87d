"""Every Slack entry point of the bot, wired in one place."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.conversation import ConversationService
from bot.listeners import assistant, feedback, home, messages
from bot.settings import Settings


def register_listeners(app: AsyncApp, service: ConversationService, settings: Settings) -> None:
    assistant.register(app, service, settings)
    messages.register(app, service)
    feedback.register(app, service)
    home.register(app)
