"""What intake stores and what storing a message gives: shared by the inbox and its writer."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class RecordStatus(enum.Enum):
    NEW = "new"
    DUPLICATE = "duplicate"
    OVER_RATE_LIMIT = "over_rate_limit"


@dataclass(frozen=True)
class Recorded:
    status: RecordStatus
    conversation_id: int


@dataclass(frozen=True)
class NewMessage:
    """A Slack message to be answered, as the listener hands it over."""

    team_id: str
    channel_id: str
    thread_ts: str
    ts: str
    user_id: str
    text: str
    surface: str = "channel"
    event_id: str | None = None
    files: str | None = None
    user_team_id: str | None = None
    """The user's own workspace: another organisation's in a Slack Connect channel."""
    enterprise_id: str | None = None
    """The receiving workspace's Enterprise Grid organisation, if any."""
    action_token: str | None = None
    """Slack's `action_token` (AI apps): lets workspace search act for this message."""
