"""Leases: which process works on a conversation, fenced by a generation number.

A compare-and-set lease on the conversation row lets exactly one process work on a
conversation at a time; every write made under a lease names its generation, so a process
that lost the lease (it was paused, another took over) changes nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import BindParameter, and_, bindparam, exists, or_, select, text, update
from sqlalchemy.exc import DBAPIError

from bot import metrics
from bot.store.database import Database
from bot.store.models import Conversation, Turn
from bot.turns.states import TurnStatus

CLAIM_LOCK_WAIT = "500ms"


class ClaimOutcome(StrEnum):
    """How an attempt to lease a conversation ended (counted in `bot_lease_claims`)."""

    CLAIMED = "claimed"
    HELD_ELSEWHERE = "held_elsewhere"
    """Another process holds a live lease (or just took it): two processes wanted the work."""
    LOCK_TIMEOUT = "lock_timeout"
    """The row stayed locked for `CLAIM_LOCK_WAIT`: the lease may have been free to take."""


class LeaseLost(Exception):
    """This process no longer holds the conversation's lease: another one continues it."""


@dataclass
class Lease:
    """A conversation held by this process, with its fencing token.

    `generation` grows with every claim, so a write made under an older claim (a process that
    was paused past its lease and woke up) matches no row and fails instead of undoing the
    new holder's work. `valid_until` (monotonic) is how long the last renewal lets this
    process act without asking the database: past it, the lease is renewed (and so proved
    still ours) before anything else is sent to Slack.
    """

    conversation_id: int
    owner: str
    generation: int
    lease_s: float
    valid_until: float

    @property
    def lapsed(self) -> bool:
        return time.monotonic() >= self.valid_until

    def params(self) -> dict[str, Any]:
        """The values `HELD` is bound to."""
        return {
            "held_conversation": self.conversation_id,
            "held_owner": self.owner,
            "held_generation": self.generation,
        }

    def lost(self) -> LeaseLost:
        return LeaseLost(f"conversation {self.conversation_id}: taken over")


HELD = and_(
    Conversation.id == bindparam("held_conversation"),
    Conversation.lease_owner == bindparam("held_owner"),
    Conversation.lease_generation == bindparam("held_generation"),
)
"""The conversation row, while the lease bound to it (`Lease.params`) is still current.
Statements are built once with it, so their compiled form is cached and reused."""

_CONVERSATION: BindParameter[int] = bindparam("for_conversation")


def awaiting_approval(conversation_id: Any) -> Any:
    """A turn of the conversation waits for a person's Allow/Deny."""
    return exists().where(
        Turn.conversation_id == conversation_id,
        Turn.status == TurnStatus.AWAITING_APPROVAL,
    )


def _lease_free(now: Any) -> Any:
    return or_(Conversation.lease_until.is_(None), Conversation.lease_until < now)


def _has_work_and_no_lease(now: float) -> Any:
    """A conversation with work waiting that no process holds a live lease on."""
    return and_(Conversation.needs_attention.is_(True), _lease_free(now))


RELEASE_IDLE = (
    update(Conversation)
    .where(Conversation.id == _CONVERSATION)
    .values(lease_owner=None, lease_until=None, needs_attention=False)
)
"""Give the conversation up with nothing left to do: `Turns.next_turn`, in the transaction
that found no turn to work on."""
_RENEW = update(Conversation).where(HELD).values(lease_until=bindparam("until"))
_CLAIM = (
    update(Conversation)
    .where(Conversation.id == _CONVERSATION, _lease_free(bindparam("now")))
    .values(
        lease_owner=bindparam("owner"),
        lease_until=bindparam("until"),
        lease_generation=Conversation.lease_generation + 1,
    )
    .returning(Conversation.lease_generation)
)


class Leases:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def any_waiting(self) -> bool:
        """Whether a conversation has work and no live lease (what `claim_waiting` would take)."""
        waiting = exists().where(_has_work_and_no_lease(time.time()))
        async with self._db.engine.connect() as connection:
            return bool(await connection.scalar(select(waiting)))

    async def claim_waiting(self, *, owner: str, lease_s: float, limit: int) -> list[Lease]:
        """Lease up to `limit` conversations that have work and no live lease, oldest first,
        in one statement.

        On PostgreSQL rows another transaction holds are skipped (`SKIP LOCKED`), so two
        processes scanning at once share the waiting work instead of both going for the
        oldest and one losing each race; a skipped row is being written (a message stored,
        which hints the storing process) or claimed by the other process.
        """
        now = time.time()
        started = time.monotonic()
        waiting = (
            select(Conversation.id)
            .where(_has_work_and_no_lease(now))
            .order_by(Conversation.updated_at)
            .limit(limit)
        )
        if self._db.dialect == "postgresql":
            waiting = waiting.with_for_update(skip_locked=True)
        statement = (
            update(Conversation)
            .where(Conversation.id.in_(waiting.scalar_subquery()), _lease_free(now))
            .values(
                lease_owner=owner,
                lease_until=now + lease_s,
                lease_generation=Conversation.lease_generation + 1,
            )
            .returning(Conversation.id, Conversation.lease_generation)
        )
        async with self._db.engine.begin() as connection:
            rows = (await connection.execute(statement)).all()
        took = time.monotonic() - started
        for _ in rows:
            metrics.lease_claim(ClaimOutcome.CLAIMED, took)
        return [
            Lease(int(conversation_id), owner, int(generation), lease_s, started + lease_s)
            for conversation_id, generation in rows
        ]

    async def claim(self, conversation_id: int, *, owner: str, lease_s: float) -> Lease | None:
        """Take the conversation's lease if nobody holds a live one (compare-and-set).

        On PostgreSQL the claim waits at most `CLAIM_LOCK_WAIT` for the row: long enough for
        an intake transaction storing a message in the same conversation (so that message is
        not left for the next scan), short enough that a process frozen mid-transaction never
        stalls this one's dispatcher.
        """
        now = time.time()
        started = time.monotonic()
        params = {
            "for_conversation": conversation_id,
            "now": now,
            "owner": owner,
            "until": now + lease_s,
        }
        try:
            async with self._db.engine.begin() as connection:
                if self._db.dialect == "postgresql":
                    await connection.execute(text(f"SET LOCAL lock_timeout = '{CLAIM_LOCK_WAIT}'"))
                generation = await connection.scalar(_CLAIM, params)
        except DBAPIError as exc:
            if "lock timeout" not in str(exc.orig).lower():
                raise
            metrics.lease_claim(ClaimOutcome.LOCK_TIMEOUT, time.monotonic() - started)
            return None
        claimed = ClaimOutcome.HELD_ELSEWHERE if generation is None else ClaimOutcome.CLAIMED
        metrics.lease_claim(claimed, time.monotonic() - started)
        if generation is None:
            return None
        return Lease(conversation_id, owner, int(generation), lease_s, started + lease_s)

    async def renew(self, lease: Lease) -> bool:
        """Extend the lease if it is still this process's (no other process claimed it)."""
        started = time.monotonic()
        renewed = await self._db.write(
            _RENEW, {**lease.params(), "until": time.time() + lease.lease_s}
        )
        if renewed:
            lease.valid_until = started + lease.lease_s
        return renewed

    async def ensure_held(self, lease: Lease) -> None:
        """Before an action another process must never repeat: a lease that may have lapsed
        (this process was paused, or its loop ran late) is renewed first, or `LeaseLost`."""
        if lease.lapsed and not await self.renew(lease):
            raise lease.lost()

    async def defer(self, lease: Lease, *, delay_s: float) -> None:
        """Give the lease up but keep the work flagged, to be retried after `delay_s`."""
        await self._db.write(
            update(Conversation)
            .where(HELD)
            .values(lease_owner=None, lease_until=time.time() + delay_s, needs_attention=True),
            lease.params(),
        )

    async def release_all(self, *, owner: str) -> None:
        """On shutdown: hand every held conversation to whichever process scans next."""
        await self._db.write(
            update(Conversation)
            .where(Conversation.lease_owner == owner)
            .values(lease_owner=None, lease_until=None)
        )

    async def release_dead_leases(self, *, owner: str) -> int:
        """At start: the leases this process's predecessor held are dead, so free them now
        rather than after `LEASE_S`. On SQLite (one process by design) every lease is."""
        held: Any = Conversation.lease_owner.is_not(None)
        if self._db.dialect != "sqlite":
            held = Conversation.lease_owner == owner
        async with self._db.engine.begin() as connection:
            result = await connection.execute(
                update(Conversation).where(held).values(lease_owner=None, lease_until=None)
            )
            return int(result.rowcount or 0)
