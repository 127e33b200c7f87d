"""Mentions in channels, messages in DMs, and replies in threads the bot already answers."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.request.internals import extract_enterprise_id, extract_team_id

from bot.attachments import slack_file_entries
from bot.conversation import ConversationService
from bot.store.inbox import NewMessage

# Subtypes that are still a person writing to the bot; edits, deletions, joins and bot
# messages all carry other subtypes and are ignored.
ANSWERED_SUBTYPES = {None, "file_share", "thread_broadcast"}


def register(app: AsyncApp, service: ConversationService) -> None:
    async def on_mention(body: dict[str, Any], event: dict[str, Any]) -> None:
        if is_from_person(event):
            await service.accept(incoming(body, event, surface="channel"))

    async def on_message(body: dict[str, Any], event: dict[str, Any]) -> None:
        if not is_from_person(event):
            return
        if event.get("channel_type") == "im":
            await service.accept_dm(incoming(body, event, surface="dm"))
            return
        thread_ts = event.get("thread_ts")
        if thread_ts and thread_ts != event.get("ts"):
            team_id = team_of(body, event)
            if await service.is_known_thread(team_id, event["channel"], thread_ts):
                await service.accept(incoming(body, event, surface="channel"))

    app.event("app_mention")(on_mention)
    app.event("message")(on_message)


def is_from_person(event: dict[str, Any]) -> bool:
    return (
        event.get("subtype") in ANSWERED_SUBTYPES
        and not event.get("bot_id")
        and bool(event.get("user"))
        and bool(event.get("ts"))
        and bool(event.get("channel"))
    )


def team_of(body: dict[str, Any], event: dict[str, Any]) -> str:
    """The workspace the event was delivered to (the bot's own installation).

    Conversations are keyed by it, not by the writer's team: in a Slack Connect channel a
    thread is one conversation whichever organisation each message comes from. Bolt's
    `extract_team_id` reads `authorizations[0].team_id`, which Slack sets to the receiving
    workspace; an org-wide install's authorization names none, and then the envelope's
    `team_id` does.
    """
    return str(extract_team_id(body) or body.get("team_id") or event.get("team") or "")


def user_team_of(body: dict[str, Any], event: dict[str, Any]) -> str:
    """The writer's own team: another organisation's for an external user in a shared
    channel (`user_team`, else `team`); the receiving workspace when the event names none."""
    return str(event.get("user_team") or event.get("team") or team_of(body, event))


def incoming(body: dict[str, Any], event: dict[str, Any], *, surface: str) -> NewMessage:
    return NewMessage(
        team_id=team_of(body, event),
        user_team_id=user_team_of(body, event),
        channel_id=event["channel"],
        thread_ts=event.get("thread_ts") or event["ts"],
        ts=event["ts"],
        user_id=event["user"],
        text=str(event.get("text") or ""),
        surface=surface,
        event_id=body.get("event_id"),
        files=slack_file_entries(event.get("files")),
        enterprise_id=extract_enterprise_id(body),
        action_token=action_token_of(event),
    )


def action_token_of(event: dict[str, Any]) -> str | None:
    """The token Slack gives AI apps with a message, for Real-time Search on its behalf."""
    thread = event.get("assistant_thread")
    token = event.get("action_token") or (
        thread.get("action_token") if isinstance(thread, dict) else None
    )
    return str(token) if token else None
