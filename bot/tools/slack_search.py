"""Answers from the workspace itself: Slack's Real-time Search API as a tool for the model.

`assistant.search.context` searches the messages and files the asking user can see, acting
for the message through the `action_token` Slack put in its event. Where the workspace or
token does not allow it (`not_allowed_token_type`, `missing_scope`, …), the tool disappears
for the rest of the process's life: no error reaches the user.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.assistants.base import ToolContext

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
NOT_ALLOWED = frozenset(
    {
        "not_allowed_token_type",
        "missing_scope",
        "not_allowed",
        "feature_not_enabled",
        "team_not_allowed",
        "access_denied",
        "invalid_action_token",
    }
)
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


class SlackSearch:
    def __init__(self, client: AsyncWebClient) -> None:
        self._client = client
        self.available = True

    def usable(self, context: ToolContext | None) -> bool:
        return self.available and context is not None and bool(context.action_token)

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
            response = await self._client.api_call("assistant.search.context", json=body)
        except SlackApiError as exc:
            error = str(exc.response.get("error"))
            if error in NOT_ALLOWED:
                log.warning("workspace search is not allowed here (%s); turning it off", error)
                self.available = False
            else:
                log.warning("workspace search failed: %s", error)
            return False, "error: workspace search is not available", []
        hits = parse_hits(dict(response.data) if isinstance(response.data, dict) else {})
        return True, hits_text(hits), hits
