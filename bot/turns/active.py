"""The turn being worked on, and the one way its progress is stored."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot import logs
from bot.metrics import Timing
from bot.slack.gateway import Place
from bot.store.models import Conversation, InboxMessage, Turn
from bot.store.repository import Lease, Store, TurnWork
from bot.turns.states import TurnStatus, turn_key


@dataclass
class ActiveTurn:
    """A turn in the hands of this process, under the lease that entitles it to act.

    Every change is stored through `save`, which is fenced by the lease; `check_lease` comes
    before anything Slack would show, so a process that lost its lease shows nothing more.
    """

    store: Store
    work: TurnWork
    timing: Timing | None = None
    """Set when the turn is answered, if this process saw it start."""

    @property
    def turn(self) -> Turn:
        return self.work.turn

    @property
    def conversation(self) -> Conversation:
        return self.work.conversation

    @property
    def messages(self) -> list[InboxMessage]:
        return self.work.messages

    @property
    def lease(self) -> Lease:
        return self.work.lease

    @property
    def key(self) -> str:
        return turn_key(self.turn.id)

    @property
    def status(self) -> TurnStatus:
        return TurnStatus(self.turn.status)

    @property
    def first_attempt(self) -> bool:
        return self.turn.attempts <= 1

    @property
    def place(self) -> Place:
        conversation = self.conversation
        return Place(
            conversation.channel_id,
            conversation.thread_ts,
            conversation.surface,
            team_id=conversation.team_id,
            enterprise_id=conversation.enterprise_id,
        )

    async def check_lease(self) -> None:
        await self.store.ensure_held(self.lease)

    async def save(self, **values: Any) -> None:
        await self.store.update_turn(self.turn.id, self.lease, **values)
        logs.note_outcome(values.get("outcome"))
        for name, value in values.items():
            setattr(self.turn, name, value)
