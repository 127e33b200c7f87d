"""The turn being worked on, and the one way its progress is stored."""

from __future__ import annotations

from dataclasses import dataclass

from bot import logs
from bot.slack.gateway import Place
from bot.store.leases import Lease
from bot.store.models import Conversation, InboxMessage, Turn
from bot.store.repository import Store
from bot.store.turns import TurnWork
from bot.turns.states import Outcome, TurnStatus, turn_key


@dataclass
class ActiveTurn:
    """A turn in the hands of this process, under the lease that entitles it to act.

    Every change is one named transition, stored fenced by the lease and then mirrored on
    `turn`; `check_lease` comes before anything Slack would show, so a process that lost its
    lease shows nothing more.
    """

    store: Store
    work: TurnWork

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
        await self.store.leases.ensure_held(self.lease)

    async def mark_running(self, run_id: str, backend: str, *, tool_state: str) -> None:
        await self.store.turns.mark_running(
            self.turn.id, self.lease, run_id=run_id, backend=backend, tool_state=tool_state
        )
        self._mirror(
            status=TurnStatus.RUNNING, remote_run_id=run_id, backend=backend, tool_state=tool_state
        )

    async def mark_posting(
        self, outcome: Outcome, answer: str | None = None, *, files_posted: bool = False
    ) -> None:
        """The outcome is known (with the answer, if there is one to show)."""
        await self.store.turns.mark_posting(
            self.turn.id, self.lease, outcome=outcome, answer=answer, files_posted=files_posted
        )
        logs.note_outcome(outcome)
        self._mirror(
            status=TurnStatus.POSTING, outcome=outcome, answer=answer, files_posted=files_posted
        )

    async def mark_awaiting_approval(self, *, tool_state: str) -> None:
        await self.store.turns.await_approval(self.turn.id, self.lease, tool_state=tool_state)
        self._mirror(status=TurnStatus.AWAITING_APPROVAL, tool_state=tool_state)

    async def mark_resuming(self) -> None:
        await self._set_status(TurnStatus.RESUMING)

    async def new_deadline(self, deadline_at: float) -> None:
        """A fresh deadline and attempt count: a person came back to the turn."""
        await self.store.turns.new_deadline(self.turn.id, self.lease, deadline_at=deadline_at)
        self._mirror(deadline_at=deadline_at, attempts=1)

    async def record_placeholder(self, ts: str) -> None:
        await self.store.turns.record_placeholder(self.turn.id, self.lease, ts)
        self._mirror(placeholder_ts=ts)

    async def record_chunks(self, posted: int, reply_ts: str | None) -> None:
        await self.store.turns.record_chunks(
            self.turn.id, self.lease, posted=posted, reply_ts=reply_ts
        )
        self._mirror(chunks_posted=posted, reply_ts=reply_ts)

    async def mark_done(self, *, chunks_posted: int, reply_ts: str | None) -> None:
        finished_at = await self.store.turns.mark_done(
            self.turn.id, self.lease, chunks_posted=chunks_posted, reply_ts=reply_ts
        )
        self._mirror(
            status=TurnStatus.DONE,
            chunks_posted=chunks_posted,
            reply_ts=reply_ts,
            files_posted=True,
            finished_at=finished_at,
            tool_state=None,
        )

    async def _set_status(self, status: TurnStatus) -> None:
        await self.store.turns.set_status(self.turn.id, self.lease, status)
        self._mirror(status=status)

    def _mirror(self, **stored: object) -> None:
        """What was just stored, on the turn this process works with."""
        for name, value in stored.items():
            setattr(self.turn, name, value)
