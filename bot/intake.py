"""Accepting a Slack message: policy first (allow-lists, the per-user rate limit), then the
durable insert that Slack's ack waits for, then a hint to the dispatcher. Nothing here waits
for the assistant."""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable
from typing import Any

from bot.settings import Settings
from bot.slack.gateway import Place, SlackGateway
from bot.store.inbox import NewMessage, RecordStatus
from bot.store.repository import Store

log = logging.getLogger(__name__)

RATE_LIMITED_TEXT = (
    "You're sending messages faster than I can answer them. Please wait a minute and try again."
)


class Acceptance(enum.Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    RATE_LIMITED = "rate_limited"
    NOT_ALLOWED = "not_allowed"


_ACCEPTANCE = {
    RecordStatus.NEW: Acceptance.ACCEPTED,
    RecordStatus.DUPLICATE: Acceptance.DUPLICATE,
    RecordStatus.OVER_RATE_LIMIT: Acceptance.RATE_LIMITED,
}


def is_allowed(message: NewMessage, settings: Settings) -> bool:
    """The allow-lists: the user's own workspace (another organisation's, in a Slack Connect
    channel), and the channel (DMs and the assistant pane are not limited by it)."""
    teams = settings.allowed_team_ids
    channels = settings.allowed_channel_ids
    if teams and (message.user_team_id or message.team_id) not in teams:
        return False
    return not (channels and message.surface == "channel" and message.channel_id not in channels)


class Intake:
    def __init__(self, *, store: Store, slack: SlackGateway, settings: Settings) -> None:
        self._store = store
        self._slack = slack
        self._settings = settings
        self._background: set[asyncio.Future[Any]] = set()

    async def accept(self, message: NewMessage) -> tuple[Acceptance, int | None]:
        """Store the message durably, once; the outcome and, when it is new, its conversation.

        The rate limit counts each stored message once, in the database, so a redelivery or
        the `app_mention`/`message` pair of one message is not counted twice, and several
        processes share one count.
        """
        if not is_allowed(message, self._settings):
            return Acceptance.NOT_ALLOWED, None
        recorded = await self._store.inbox.record_message(
            message, per_minute=self._settings.user_rate_limit_per_minute
        )
        acceptance = _ACCEPTANCE[recorded.status]
        if acceptance is Acceptance.RATE_LIMITED:
            self.in_background(self._tell_rate_limited(message))
        if acceptance is Acceptance.ACCEPTED:
            return acceptance, recorded.conversation_id
        return acceptance, None

    async def _tell_rate_limited(self, message: NewMessage) -> None:
        place = Place(
            message.channel_id,
            message.thread_ts,
            message.surface,
            team_id=message.team_id,
            enterprise_id=message.enterprise_id,
        )
        await self._slack.post_ephemeral(place, message.user_id, RATE_LIMITED_TEXT)

    def in_background(self, work: Awaitable[Any]) -> None:
        """A Slack call the ack must not wait for."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Future[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("background Slack call failed: %r", task.exception())

    def cancel_background(self) -> None:
        for task in list(self._background):
            task.cancel()
