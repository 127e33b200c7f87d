"""A turn's states and outcomes, as stored in `turns.status` and `turns.outcome`."""

from __future__ import annotations

from enum import StrEnum


class TurnStatus(StrEnum):
    """queued → running (the run exists remotely) → posting (the answer is known) → done."""

    QUEUED = "queued"
    RUNNING = "running"
    POSTING = "posting"
    DONE = "done"
    AWAITING_APPROVAL = "awaiting_approval"
    """A tool call waits for the asker's Allow/Deny; the dispatcher leaves the turn alone
    (and opens no new one in its thread) until the click stores a decision."""
    RESUMING = "resuming"
    """The decision is stored: carry the run on with it."""


OPEN_STATUSES = (
    TurnStatus.QUEUED,
    TurnStatus.RUNNING,
    TurnStatus.POSTING,
    TurnStatus.RESUMING,
)


class Outcome(StrEnum):
    """How a turn ended; each maps to what the user sees (`bot/replies.py`).

    The first seven are the run states the assistant APIs report; the rest are the bot's own.
    Every finished `RunState` must have an outcome here (tests/test_states.py checks it).
    """

    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    INCOMPLETE = "incomplete"
    REQUIRES_ACTION = "requires_action"
    TOO_LONG = "too_long"
    """The chat backend's conversation outgrew the model even after shortening."""
    UNAVAILABLE = "unavailable"
    REJECTED = "rejected"
    EMPTY = "empty"
    NO_TEXT = "no_text"
    OVER_BUDGET = "over_budget"
    UNINSTALLED = "uninstalled"
    """The workspace removed the bot while the turn was open: nothing more is shown."""


def turn_key(turn_id: int) -> str:
    """The bot's own name for a turn at the assistant API (stored with the run or response),
    by which a retried turn recognises the run an earlier attempt started."""
    return f"turn-{turn_id}"
