"""The turn engine wired as the bot wires it (`bot.bootstrap`), around the fake model and the
in-memory Slack, on a real store: a message is put in, and a "process" takes its turn the
way the dispatcher does (claims the lease, takes the next turn, runs it).

A restart is a new `Process` on the same store, Slack and model: the old one's leases are
dead (`release_dead_leases`, as at start-up) and the new one carries the turn on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from itertools import count

from sqlalchemy import select

from bot.admin.service import AdminService
from bot.bootstrap import _conversation_service
from bot.conversation import ConversationService
from bot.settings import Settings
from bot.store.inbox import NewMessage
from bot.store.leases import Lease
from bot.store.models import Turn
from bot.store.repository import Store
from bot.store.tool_models import ToolApproval
from bot.store.turns import TurnWork
from bot.tools.approvals import Click
from bot.turns.runner import TurnRunner
from bot.turns.wakeups import RunWakeups
from tests.unit.turns.fake_model import FakeModel
from tests.unit.turns.fake_slack import FakeSlack, Message

CHANNEL = "C1"
THREAD = "1000.000100"
ASKER = "UALICE"

SETTINGS = Settings(
    slack_bot_token="xoxb-test",
    slack_signing_secret="secret",
    openai_api_key="sk-test",
    assistant_api="chat",
    delivery="poll",
    poll_initial_s=0.005,
    poll_max_s=0.02,
    retry_base_s=0.01,
    answer_deadline_s=10.0,
)


@dataclass
class Process:
    """One run of the bot: its own turn engine, under its own lease owner."""

    owner: str
    service: ConversationService
    runner: TurnRunner


class Bench:
    def __init__(self, store: Store, model: FakeModel, *, settings: Settings = SETTINGS) -> None:
        self.store = store
        self.model = model
        self.slack = FakeSlack()
        self.settings = settings
        self._owners = count(1)
        self._message_ts = count(1)

    def start_process(self) -> Process:
        """The bot (re)started: the turn engine built by the composition root."""
        settings = replace(self.settings, instance_id=f"bot-{next(self._owners)}")
        service = _conversation_service(
            settings,
            self.store,
            self.slack.gateway(),
            self.model,
            AdminService(self.store.engine, settings),
            RunWakeups(),
        )
        return Process(settings.instance_id, service, service._runner)

    async def ask(self, text: str, *, user: str = ASKER, channel: str = CHANNEL) -> int:
        """A message in the thread, stored as intake stores it; its conversation's id."""
        ts = f"{1000 + next(self._message_ts)}.000200"
        message = NewMessage("T1", channel, THREAD, ts, user, text)
        return (await self.store.inbox.record_message(message)).conversation_id

    async def take_turn(self, process: Process, conversation_id: int) -> TurnWork:
        """What the dispatcher does for one turn: lease the conversation and run its next
        turn."""
        return await self.run_turn(process, await self.take_over(process, conversation_id))

    async def take_over(self, process: Process, conversation_id: int) -> Lease:
        """`process` leases the conversation. Whoever held it before is dead or was paused
        past its lease: its lease is freed first (on SQLite, as at start-up)."""
        await self.store.leases.release_dead_leases(owner=process.owner)
        lease = await self.store.leases.claim(
            conversation_id, owner=process.owner, lease_s=self.settings.lease_s
        )
        assert lease is not None, "the conversation is leased by another process"
        return lease

    async def run_turn(self, process: Process, lease: Lease) -> TurnWork:
        work = await self.store.turns.next_turn(lease, deadline_s=self.settings.answer_deadline_s)
        assert work is not None, "no turn to take"
        await process.runner.take_turn(work)
        return work

    # What is stored ---------------------------------------------------------------------

    async def turn(self, conversation_id: int) -> Turn | None:
        """The conversation's newest turn, as stored."""
        async with self.store.engine.connect() as connection:
            row = (
                await connection.execute(
                    select(Turn)
                    .where(Turn.conversation_id == conversation_id)
                    .order_by(Turn.id.desc())
                    .limit(1)
                )
            ).first()
        return None if row is None else Turn(**row._mapping)

    async def stored_status(self, conversation_id: int) -> str:
        """The newest turn's status ("" before there is one)."""
        turn = await self.turn(conversation_id)
        return "" if turn is None else turn.status

    async def decide(self, process: Process, conversation: int, *, allowed: bool) -> Click:
        """The asker clicks Allow (or Deny) on the turn's waiting tool call, in `process`."""
        turn = await self.turn(conversation)
        assert turn is not None
        approval = await self.approval(turn.id)
        return await process.service.decide_tool_call(
            approval_id=approval.id,
            user_id=ASKER,
            allowed=allowed,
            channel_id=CHANNEL,
            thread_ts=THREAD,
            team_id="T1",
        )

    async def approval(self, turn_id: int) -> ToolApproval:
        async with self.store.engine.connect() as connection:
            row = (
                await connection.execute(
                    select(ToolApproval).where(ToolApproval.turn_id == turn_id)
                )
            ).one()
        return ToolApproval(**row._mapping)

    # What the user sees -----------------------------------------------------------------

    def thread(self, channel: str = CHANNEL) -> list[str]:
        """The bot's messages in the thread, oldest first."""
        return self.slack.texts(channel, THREAD)

    def messages(self, channel: str = CHANNEL) -> list[Message]:
        return self.slack.bot_messages(channel, THREAD)


async def until(condition: Callable[[], bool | Awaitable[bool]], timeout_s: float = 10.0) -> None:
    """Wait for `condition` (a check, or an async one), looking every few milliseconds."""
    deadline = time.monotonic() + timeout_s
    while True:
        met = condition()
        if met if isinstance(met, bool) else await met:
            return
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.002)
