"""Answers from the workspace itself: Slack's Real-time Search API as a tool for the model.

`assistant.search.context` searches the messages and files the asking user can see, acting
for the message through the `action_token` Slack put in its event, with the bot token of the
turn's own workspace (each installation's in OAuth mode). Where a workspace does not allow it
(`not_allowed_token_type`, `missing_scope`, …), the tool disappears for that workspace for the
rest of the process's life: no error reaches the user. A problem of one message (its action
token expired or refused) fails that search only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.assistants.base import ToolContext
from bot.slack.errors import SlackErrorKind, error_code, kind_of

log = logging.getLogger(__name__)

SERVER = "slack"
TOOL = "search_workspace"
DESCRIPTION = (
    "Search the messages and files in this Slack workspace that the asking user can see. "
    "Use it for questions about the team's own discussions, decisions and documents. Cite "
    "every message you use as a Slack link with its permalink."
)
PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {"query": {"type": "string", "description": "What to search for."}},
    "required": ["query"],
}


class Refused(StrEnum):
    """How far a refused search reaches."""

    WORKSPACE = "workspace"
    """The workspace does not allow search: not offered there again."""
    THIS_SEARCH = "this_search"
    """Something of this message or moment (its action token expired, …): this search only."""


def refused(error: str) -> Refused:
    """How far Slack's error for a search reaches (pure)."""
    if kind_of(error) is SlackErrorKind.NOT_ALLOWED:
        return Refused.WORKSPACE
    return Refused.THIS_SEARCH


MAX_RESULTS = 8
MAX_CONTENT_CHARS = 600


@dataclass(frozen=True)
class Hit:
    author: str
    channel: str
    permalink: str
    content: str


def parse_hits(response: dict[str, Any]) -> list[Hit]:
    """The message results of a search response (pure)."""
    results = response.get("results") or {}
    hits = []
    for raw in (results.get("messages") or [])[:MAX_RESULTS]:
        if not isinstance(raw, dict) or not raw.get("permalink"):
            continue
        hits.append(
            Hit(
                author=str(raw.get("author_name") or raw.get("author_user_id") or "someone"),
                channel=str(raw.get("channel_name") or raw.get("channel_id") or ""),
                permalink=str(raw["permalink"]),
                content=str(raw.get("content") or "")[:MAX_CONTENT_CHARS],
            )
        )
    return hits


def hits_text(hits: list[Hit]) -> str:
    """What the model reads: each hit with the permalink to cite it by."""
    if not hits:
        return "No messages found."
    return "\n".join(
        f"- {hit.author} in #{hit.channel} ({hit.permalink}): {hit.content}" for hit in hits
    )


ClientFor = Callable[[ToolContext], Awaitable[AsyncWebClient]]
"""The Web API client with the bot token of the turn's workspace."""


class SlackSearch:
    def __init__(self, client_for: ClientFor) -> None:
        self._client_for = client_for
        self._refused: set[tuple[str, str | None]] = set()

    def usable(self, context: ToolContext | None) -> bool:
        return (
            context is not None
            and bool(context.action_token)
            and _workspace(context) not in self._refused
        )

    async def search(self, arguments: str, context: ToolContext) -> tuple[bool, str, list[Hit]]:
        """(ok, text for the model, hits)."""
        try:
            query = str(json.loads(arguments or "{}").get("query") or "").strip()
        except (ValueError, AttributeError):
            query = ""
        if not query:
            return False, "error: give a query to search for", []
        body: dict[str, Any] = {
            "query": query,
            "action_token": context.action_token,
            "content_types": ["messages"],
            "limit": MAX_RESULTS,
        }
        if context.channel_id:
            body["context_channel_id"] = context.channel_id
        try:
            client = await self._client_for(context)
            response = await client.api_call("assistant.search.context", json=body)
        except SlackApiError as exc:
            error = error_code(exc)
            if refused(error) is Refused.WORKSPACE:
                log.warning(
                    "workspace search is not allowed in team %s (%s); turning it off there",
                    context.team_id,
                    error,
                )
                self._refused.add(_workspace(context))
            else:
                log.warning("workspace search failed in team %s: %s", context.team_id, error)
            return False, "error: workspace search is not available", []
        except Exception as exc:  # no token for the workspace, Slack unreachable: this turn's
            log.warning("workspace search failed in team %s: %r", context.team_id, exc)
            return False, "error: workspace search is not available", []
        hits = parse_hits(dict(response.data) if isinstance(response.data, dict) else {})
        return True, hits_text(hits), hits


def _workspace(context: ToolContext) -> tuple[str, str | None]:
    return context.team_id, context.enterprise_id
