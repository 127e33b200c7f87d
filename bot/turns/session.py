"""One turn in the hands of this process, for one attempt: the stored turn (`ActiveTurn`),
its tool state (which the backends act on and the turn stores with itself), the live message
showing the answer as it is written, and the attempt's timings. Opened when the runner takes
the turn, closed in one `finally`: nothing of the turn stays in memory after it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

from bot.assistants.turn_tools import TurnTools
from bot.live import LiveMessage
from bot.turns.active import ActiveTurn


class TurnExit(Enum):
    """How an attempt at a turn ended, which says what becomes of its live message."""

    RETURNED = "returned"
    """Answered, or waiting for a person: the live message was ended on the way."""
    FAILED = "failed"
    """Failed for now: a later attempt carries on from what is stored (the message's ts)."""
    LEASE_LOST = "lease_lost"
    """Another process carries the turn on: a live message it cannot know of goes."""
    CANCELLED = "cancelled"
    """The task was cancelled (the process dies): whoever resumes adopts the message."""
    STOPPING = "stopping"
    """The process stops with the turn in hand: the live message ends with a note."""


@dataclass
class TurnTimings:
    """From the turn's first message (its `received_at`, as stored, so a turn resumed by a
    later attempt or another process measures from the Slack event too) to the first words
    of the answer in Slack, and to the complete answer (seconds)."""

    received_at: float | None
    first_words_s: float | None = None
    complete_s: float | None = None

    @classmethod
    def since(cls, received_at: Sequence[float]) -> TurnTimings:
        return cls(min(received_at) if received_at else None)

    def words_out(self, now: float) -> float | None:
        """The first words are on their way: how long after the event, the first time
        only (None after that, or when the start is unknown)."""
        if self.received_at is None or self.first_words_s is not None:
            return None
        self.first_words_s = max(0.0, now - self.received_at)
        return self.first_words_s

    def answered(self, now: float) -> float | None:
        """The complete answer is out: how long after the event (None if unknown)."""
        if self.received_at is not None:
            self.complete_s = max(0.0, now - self.received_at)
        return self.complete_s


@dataclass
class TurnSession:
    active: ActiveTurn
    tools: TurnTools
    timings: TurnTimings
    live: LiveMessage | None = field(default=None)
    """The message showing the answer as the model writes it, once this attempt opened it."""

    @classmethod
    def open(cls, active: ActiveTurn) -> TurnSession:
        """The turn, its tool state as stored (fresh for a new turn)."""
        received = [message.received_at for message in active.messages]
        return cls(active, TurnTools.load(active.turn.tool_state), TurnTimings.since(received))

    def take_live(self) -> LiveMessage | None:
        """The live message, which the caller now ends (the session no longer holds it)."""
        live, self.live = self.live, None
        return live

    async def mark_running(self, run_id: str, backend: str) -> None:
        """The run is known; the tool state is stored with it."""
        await self.active.mark_running(run_id, backend, tool_state=self.tools.dump())

    async def mark_awaiting_approval(self) -> None:
        """The turn waits for a click; its tool state is stored to carry on with."""
        await self.active.mark_awaiting_approval(tool_state=self.tools.dump())

    async def close(self) -> None:
        """Let go of what the attempt holds open (its live message was ended before)."""
        self.live = None
        await self.tools.close()
