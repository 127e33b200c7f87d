"""Reading a Slack thread within Slack's limits, and finding the bot's own messages in it."""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.client import without_rate_limit_retries
from bot.slack.errors import SlackErrorKind, classify

log = logging.getLogger(__name__)

ASSISTANT_AUTHOR = "Assistant"
HISTORY_PAGE = 200
"""Messages asked for per conversations.replies request; Slack gives apps outside the
Marketplace at most 15 whatever is asked (and one such request a minute)."""
HISTORY_PAGES = 10


@dataclass(frozen=True)
class ThreadMessage:
    """A message of the Slack thread as history for the assistant."""

    ts: str
    author_id: str
    text: str
    from_bot: bool


@dataclass(frozen=True)
class ThreadRead:
    """What could be read of a thread: its messages, oldest first, and whether some are
    missing (Slack rate-limited the reading, or the thread is longer than is read)."""

    messages: list[ThreadMessage]
    incomplete: bool = False


def is_from_bot(raw: dict[str, Any], bot_user_ids: Collection[str]) -> bool:
    """A message the bot (or any app) wrote."""
    return raw.get("user") in bot_user_ids or bool(raw.get("bot_id"))


async def read_thread(
    client: AsyncWebClient,
    channel_id: str,
    thread_ts: str,
    *,
    before_ts: str,
    bot_user_ids: Collection[str],
) -> ThreadRead:
    """The thread's messages older than `before_ts`, read with care for Slack's limits on
    apps outside the Marketplace (one request a minute, 15 messages each): pages of 15,
    at most HISTORY_PAGES of them, and a rate limit ends the reading at once (no waiting
    a minute inside a turn) with what was read so far, marked incomplete."""
    client = without_rate_limit_retries(client)
    messages: list[ThreadMessage] = []
    cursor: str | None = None
    incomplete = False
    for _ in range(HISTORY_PAGES):
        try:
            response = await client.conversations_replies(
                channel=channel_id,
                ts=thread_ts,
                latest=before_ts,
                inclusive=False,
                limit=HISTORY_PAGE,
                cursor=cursor,
            )
        except SlackApiError as exc:
            if classify(exc) is not SlackErrorKind.RATE_LIMITED:
                raise
            log.info("conversations.replies is rate-limited; the thread is read in part")
            incomplete = True
            break
        for raw in response.get("messages") or []:
            message = _history_message(raw, bot_user_ids)
            if message is not None and float(message.ts) < float(before_ts):
                messages.append(message)
        cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
        if not cursor:
            break
    else:
        incomplete = True
    unique = {message.ts: message for message in messages}
    return ThreadRead(sorted(unique.values(), key=lambda m: float(m.ts)), incomplete)


async def find_bot_message(
    client: AsyncWebClient,
    channel_id: str,
    thread_ts: str,
    *,
    bot_user_ids: Collection[str],
    after_ts: str,
    texts: set[str],
    prefix_of: str | None = None,
) -> str | None:
    """The ts of the bot's own message in the thread, newer than `after_ts`, whose text is
    one of `texts` (or a non-empty beginning of `prefix_of`: a stream that had shown its
    first words): what a process that died right after posting it never recorded."""
    response = await client.conversations_replies(
        channel=channel_id, ts=thread_ts, oldest=after_ts, limit=50
    )
    for raw in response.get("messages") or []:
        newer = float(raw.get("ts", 0)) > float(after_ts)
        text = str(raw.get("text") or "")
        begins = bool(prefix_of and text.strip() and prefix_of.startswith(text))
        if is_from_bot(raw, bot_user_ids) and newer and (text in texts or begins):
            return str(raw["ts"])
    return None


def _history_message(raw: dict[str, Any], bot_user_ids: Collection[str]) -> ThreadMessage | None:
    text = str(raw.get("text") or "")
    if not text.strip():
        return None
    author = str(raw.get("user") or raw.get("username") or raw.get("bot_id") or "unknown")
    return ThreadMessage(
        ts=str(raw["ts"]), author_id=author, text=text, from_bot=is_from_bot(raw, bot_user_ids)
    )
