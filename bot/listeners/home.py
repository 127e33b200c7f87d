"""The App Home tab: what the bot does and how to use it."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp

HOME_TEXT = (
    "*Hi, I'm your team's assistant.* I answer questions with an OpenAI assistant and keep the "
    "whole Slack thread as the conversation.\n\n"
    "• *In a channel:* mention me (`@assistant your question`). I answer in the thread, and "
    "I keep answering replies in that thread without another mention.\n"
    "• *In a DM or the assistant pane:* just write; every thread is its own conversation.\n"
    "• *Mid-thread:* mention me in an existing thread and I read the earlier messages first.\n"
    "• Use 👍 / 👎 under an answer to tell the people running me how I did."
)


def home_view() -> dict[str, Any]:
    return {
        "type": "home",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "Assistant"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": HOME_TEXT}},
        ],
    }


def register(app: AsyncApp) -> None:
    async def publish_home(client: Any, event: dict[str, Any]) -> None:
        if event.get("tab", "home") == "home":
            await client.views_publish(user_id=event["user"], view=home_view())

    app.event("app_home_opened")(publish_home)
