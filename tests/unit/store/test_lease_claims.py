"""Lease claims are counted by outcome (`bot_lease_claims`, `bot_lease_claim_seconds`), so
an operator running several processes sees whether they fight over work or wait on locks."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from bot.metrics import REGISTRY
from bot.settings import database_url as async_url
from bot.store.db import create_engine, migrate
from bot.store.inbox import NewMessage
from bot.store.leases import ClaimOutcome
from bot.store.models import Conversation
from bot.store.repository import Store


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    engine = create_engine(async_url(database_url))
    await migrate(engine)
    yield Store(engine)
    await engine.dispose()


def claims(outcome: ClaimOutcome) -> float:
    return REGISTRY.get_sample_value("bot_lease_claims_total", {"outcome": outcome}) or 0.0


def claim_wait() -> tuple[float, float]:
    """(claims timed, seconds spent claiming) so far."""
    count = REGISTRY.get_sample_value("bot_lease_claim_seconds_count") or 0.0
    total = REGISTRY.get_sample_value("bot_lease_claim_seconds_sum") or 0.0
    return count, total


async def new_conversation(store: Store) -> int:
    message = NewMessage("T1", "C1", "1.0", "1.0", "U1", "hi", action_token=None)
    return (await store.inbox.record_message(message)).conversation_id


async def test_a_claim_another_process_won_counts_as_held_elsewhere(store: Store) -> None:
    conversation = await new_conversation(store)
    claimed, elsewhere = claims(ClaimOutcome.CLAIMED), claims(ClaimOutcome.HELD_ELSEWHERE)
    timed, _ = claim_wait()

    assert await store.leases.claim(conversation, owner="a", lease_s=30) is not None
    assert await store.leases.claim(conversation, owner="b", lease_s=30) is None

    assert claims(ClaimOutcome.CLAIMED) == claimed + 1
    assert claims(ClaimOutcome.HELD_ELSEWHERE) == elsewhere + 1
    assert claim_wait()[0] == timed + 2


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_claim_that_waits_out_a_row_lock_counts_as_lock_timeout(store: Store) -> None:
    conversation = await new_conversation(store)
    timeouts = claims(ClaimOutcome.LOCK_TIMEOUT)
    _, waited = claim_wait()

    async with store.engine.begin() as locker:  # an intake transaction in another process
        await locker.execute(
            select(Conversation.id).where(Conversation.id == conversation).with_for_update()
        )
        started = time.monotonic()
        assert await store.leases.claim(conversation, owner="a", lease_s=30) is None
        blocked = time.monotonic() - started

    assert claims(ClaimOutcome.LOCK_TIMEOUT) == timeouts + 1
    assert claim_wait()[1] - waited == pytest.approx(blocked, abs=0.1)
    assert await store.leases.claim(conversation, owner="a", lease_s=30) is not None


async def test_a_scan_leases_every_waiting_conversation_once_whoever_scans(store: Store) -> None:
    first, second = await new_conversation(store), await _another_conversation(store)

    leased = await store.leases.claim_waiting(owner="a", lease_s=30, limit=10)
    again = await store.leases.claim_waiting(owner="b", lease_s=30, limit=10)

    assert sorted(lease.conversation_id for lease in leased) == sorted([first, second])
    assert again == []
    for lease in leased:  # each lease is live and fenced: the holder can work under it
        await store.leases.ensure_held(lease)


async def test_a_scan_takes_no_more_than_its_free_slots(store: Store) -> None:
    await new_conversation(store)
    await _another_conversation(store)

    assert len(await store.leases.claim_waiting(owner="a", lease_s=30, limit=1)) == 1
    assert len(await store.leases.claim_waiting(owner="b", lease_s=30, limit=1)) == 1


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_scan_skips_a_locked_conversation_without_waiting_and_takes_the_rest(
    store: Store,
) -> None:
    """Two processes scanning at once: the row one of them is claiming (or a message being
    stored) is passed over at once rather than waited for or fought over."""
    locked, free = await new_conversation(store), await _another_conversation(store)
    elsewhere = claims(ClaimOutcome.HELD_ELSEWHERE)

    async with store.engine.begin() as other:
        await other.execute(
            select(Conversation.id).where(Conversation.id == locked).with_for_update()
        )
        leased = await store.leases.claim_waiting(owner="a", lease_s=30, limit=10)

    assert [lease.conversation_id for lease in leased] == [free]
    assert claims(ClaimOutcome.HELD_ELSEWHERE) == elsewhere
    (later,) = await store.leases.claim_waiting(owner="a", lease_s=30, limit=10)
    assert later.conversation_id == locked


async def _another_conversation(store: Store) -> int:
    message = NewMessage("T1", "C2", "2.0", "2.0", "U1", "hi", action_token=None)
    return (await store.inbox.record_message(message)).conversation_id
