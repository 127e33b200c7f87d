"""Every Slack entry point of the bot, wired in one place."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.admin.service import AdminService
from bot.conversation import ConversationService
from bot.listeners import (
    agent,
    approvals,
    assistant,
    channel_switch,
    commands,
    feedback,
    home,
    messages,
)
from bot.settings import Settings


def register_listeners(
    app: AsyncApp, service: ConversationService, admin: AdminService, settings: Settings
) -> None:
    channel_switch.register(app, admin)  # first: an off channel reaches no listener
    if settings.agent_view:
        agent.register(app, service, settings)  # before home: it takes the Messages tab
    assistant.register(app, service, settings)
    messages.register(app, service)
    feedback.register(app, service, admin)
    approvals.register(app, service)
    home.register(app, admin)
    commands.register(app, admin)
