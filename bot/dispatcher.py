"""Which conversation this process works on, and when.

Conversations with work are leased through the database (a compare-and-set on the row), so
any number of processes share the work and never run one conversation twice at once. A
lease is renewed while a turn runs; a process that dies loses it after `LEASE_S` (or at once
when it restarts under the same `BOT_INSTANCE_ID`), and a conversation whose turn keeps
failing is retried with the shared backoff. Every claim carries a fencing token: a process
that was paused past its lease stops at its next write instead of undoing the new holder's.

Slack's acks share this process's event loop with the turns. When the loop runs late, new
conversations wait in the database (they are already stored) rather than start, so the acks
stay fast under a burst while the turns in hand finish at the pace the CPU allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bot import metrics
from bot.admin.report import counted
from bot.settings import Settings
from bot.slack_tokens import TokenUnavailable
from bot.store.db import database_health
from bot.store.leases import Lease, LeaseLost
from bot.store.repository import Store
from bot.store.turns import TurnWork
from bot.turns.retry import RetryPolicy

log = logging.getLogger(__name__)

TakeTurn = Callable[[TurnWork], Awaitable[None]]
Sweep = Callable[[], Awaitable[list[int]]]
"""Work that comes due with time, not with an event (approvals nobody answered): moves it
on in the database and names the conversations that now have work."""
BUSY_LAG_S = 0.005
"""Loop lag above which no new conversation is started: an ack waits a few loop turns."""
BUSY_RECHECK_S = 0.02
IDLE_SCAN_MAX_S = 10.0
"""Idle, the database is scanned this rarely (other processes' dead leases, missed hints)."""


class LoopLag:
    """How late the event loop runs what is ready, measured by a ticker that oversleeps.

    Only lateness spent running this process's own code counts (the loop thread's CPU
    time): when the OS runs something else instead, holding our work back would not help.
    The lag jumps up at once and halves each tick, so a burst holds new work back until
    the loop has been calm for a moment. The dispatcher starts the ticker only when a
    conversation could start beside others (ticking costs about 10 ms of CPU a second), and
    stops it when none is active.
    """

    def __init__(self, tick_s: float = 0.01) -> None:
        self.tick_s = tick_s
        self.lag_s = 0.0
        self.sampled = False
        """At least one tick measured since the ticker started: until then the lag is unknown."""
        self._ticker: asyncio.Task[None] | None = None

    def measure(self, busy: bool) -> None:
        """Tick only while there is work: idle, the process costs no wake-ups."""
        if busy and self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(self.run())
        elif not busy and self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
            self.lag_s = 0.0
            self.sampled = False

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start, cpu_start = loop.time(), time.thread_time()
            await asyncio.sleep(self.tick_s)
            late = loop.time() - start - self.tick_s
            ours = min(late, time.thread_time() - cpu_start)
            self.lag_s = max(ours, self.lag_s * 0.5)
            self.sampled = True

    @property
    def late(self) -> bool:
        """Measured, and running late."""
        return self.sampled and self.lag_s >= BUSY_LAG_S


class Dispatcher:
    def __init__(
        self,
        *,
        store: Store,
        settings: Settings,
        take_turn: TakeTurn,
        retry: RetryPolicy,
        sweep: Sweep | None = None,
        load: LoopLag | None = None,
    ) -> None:
        self._store = store
        self._sweep = sweep
        self._load = load or LoopLag()
        self._settings = settings
        self._take_turn = take_turn
        self._retry = retry
        self.owner = settings.instance_id
        self._wake = asyncio.Event()
        self._hints: set[int] = set()
        self._active: dict[int, asyncio.Task[None]] = {}
        self._failures: dict[int, int] = {}
        self._last_scan = 0.0
        self._more_waiting = False
        """The last scan left work waiting that this process may take as soon as it has room:
        look again at the busy pace, not at the next scan."""
        self._last_sweep = 0.0
        self._scan_interval_s = min(1.0, settings.lease_s / 3)
        self._idle_scan_interval_s = max(
            self._scan_interval_s, min(IDLE_SCAN_MAX_S, settings.lease_s / 3)
        )
        self._timers: set[asyncio.TimerHandle] = set()
        self.stopping = False

    def hint(self, conversation_id: int) -> None:
        """New work in this conversation: look at it now rather than at the next scan."""
        self._hints.add(conversation_id)
        self._wake.set()

    async def run(self) -> None:
        """Lease and work on conversations until `shutdown` is called."""
        try:
            freed = await self._store.leases.release_dead_leases(owner=self.owner)
            if freed:
                log.info("resuming %s conversation(s) a previous run of this bot held", freed)
            while not self.stopping:
                self._wake.clear()
                try:
                    await self._dispatch_once()
                except Exception as exc:
                    database_health(self._store.engine).report(
                        log, exc, "dispatcher: scanning for work failed; retrying"
                    )
                    await asyncio.sleep(self._scan_interval_s)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self._wait_s())
        finally:
            self._load.measure(busy=False)
            for timer in self._timers:
                timer.cancel()

    def _wait_s(self) -> float:
        """Until the next look at the work: soon while hints or waiting work wait for room,
        at the scan interval while conversations are worked on, rarely when idle (hints and
        finished work wake it)."""
        if self._hints or (self._more_waiting and self._may_look_for_more()):
            return BUSY_RECHECK_S
        return self._scan_interval_s if self._active else self._idle_scan_interval_s

    @property
    def in_hand(self) -> int:
        """Conversations this process is working on now."""
        return len(self._active)

    async def shutdown(
        self, *, stop_now: asyncio.Event | None = None, interrupt: Callable[[], None] = lambda: None
    ) -> int:
        """Stop taking work; let running turns finish within the grace period, or until
        `stop_now` is set (a second Ctrl-C). `interrupt` is called before the turns still
        running are cancelled; returns how many were."""
        self.stopping = True
        self._wake.set()
        active = list(self._active.values())
        pending: list[asyncio.Task[None]] = []
        if active:
            log.info("finishing %s, press Ctrl-C again to stop now", counted(len(active), "answer"))
            pending = await self._finish_within_grace(active, stop_now)
            if pending:
                interrupt()
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self._store.leases.release_all(owner=self.owner)
        return len(pending)

    async def _finish_within_grace(
        self, tasks: list[asyncio.Task[None]], stop_now: asyncio.Event | None
    ) -> list[asyncio.Task[None]]:
        """Wait for `tasks` for SHUTDOWN_GRACE_S at most, or until `stop_now`; the unfinished."""
        stopper: asyncio.Future[Any] = asyncio.ensure_future((stop_now or asyncio.Event()).wait())
        finished: asyncio.Future[Any] = asyncio.gather(*tasks, return_exceptions=True)
        try:
            await asyncio.wait(
                [finished, stopper],
                timeout=self._settings.shutdown_grace_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            stopper.cancel()
        return [task for task in tasks if not task.done()]

    def _can_start_more(self) -> bool:
        return self._room() > 0

    def _room(self) -> int:
        """How many more conversations may start now: up to the cap while the loop is not
        running late.

        With nothing active the loop's lag is not ours to fix, so one conversation always
        starts; the lag is measured only while there is work, so the next ones wait for the
        first measurement.
        """
        if not self._active:
            return 1
        if not self._load.sampled or self._load.late:
            return 0
        return max(0, self._settings.max_concurrent_turns - len(self._active))

    def _may_look_for_more(self) -> bool:
        """Scan the database: under the cap, and the loop not measured running late (the
        conversations found then wait for a measurement before they start)."""
        if not self._active:
            return True
        return len(self._active) < self._settings.max_concurrent_turns and not self._load.late

    async def _dispatch_once(self) -> None:
        candidates = list(self._hints)
        self._hints.clear()
        now = time.monotonic()
        interval = self._scan_interval_s if self._active else self._idle_scan_interval_s
        due = self._more_waiting or now - self._last_scan >= interval
        if due and self._may_look_for_more() and not self.stopping:
            self._last_scan = now
            if self._sweep is not None and now - self._last_sweep >= self._idle_scan_interval_s:
                # Approvals time out in minutes: sweeping at the idle pace is soon enough,
                # and spares every second of work two queries.
                self._last_sweep = now
                candidates += await self._sweep()
            await self._claim_waiting()
        for conversation_id in dict.fromkeys(candidates):
            if conversation_id in self._active or self.stopping:
                continue
            if self._active:
                self._load.measure(busy=True)  # one more beside others: watch the loop
            if not self._can_start_more():
                self._hints.add(conversation_id)
                continue
            claimed = await self._store.leases.claim(
                conversation_id, owner=self.owner, lease_s=self._settings.lease_s
            )
            if claimed is not None:
                self._start_work(claimed)

    async def _claim_waiting(self) -> None:
        """Lease what waits, as the room allows. What is left waiting (the room was full,
        or the loop not yet measured: the ticker runs only once conversations are side by
        side) starts the measuring and is looked at again at the busy pace, so work stored
        before a restart or a burst is taken as fast as the room allows, not one
        conversation a scan."""
        room = self._room()
        if room:
            claimed = await self._store.leases.claim_waiting(
                owner=self.owner, lease_s=self._settings.lease_s, limit=room
            )
            for lease in claimed:
                self._start_work(lease)
            self._more_waiting = len(claimed) == room
        else:
            self._more_waiting = await self._store.leases.any_waiting()
        if self._more_waiting:
            self._load.measure(busy=True)

    def _start_work(self, lease: Lease) -> None:
        self._active[lease.conversation_id] = asyncio.create_task(self._work_on(lease))
        if len(self._active) > 1:
            self._load.measure(busy=True)  # conversations side by side: watch the loop

    async def _work_on(self, lease: Lease) -> None:
        conversation_id = lease.conversation_id
        heartbeat = asyncio.create_task(self._keep_lease(lease, asyncio.current_task()))
        try:
            while not self.stopping:
                work = await self._store.turns.next_turn(
                    lease, deadline_s=self._settings.answer_deadline_s
                )
                if work is None:
                    return  # nothing left: next_turn gave the lease up
                await self._take_turn(work)
                self._failures.pop(conversation_id, None)
        except (asyncio.CancelledError, LeaseLost) as exc:
            if not self.stopping:
                metrics.lease_lost()
                log.warning(
                    "conversation %s: lease lost (%s), another process continues",
                    conversation_id,
                    exc or "renewal failed",
                )
        except TokenUnavailable as exc:
            # No token for the workspace (never installed there, removed behind the bot's
            # back, or its refresh token refused): nothing can be shown, and an operator must
            # know. Tried again later (a reinstall mends it) until the turn is given up.
            log.error("conversation %s: not answered, %s", conversation_id, exc)
            metrics.no_token(exc.reason)
            await self._retry_later(lease)
        except Exception as exc:
            delay = await self._retry_later(lease)
            log.warning(
                "conversation %s: will retry in %.1fs after %r", conversation_id, delay, exc
            )
        finally:
            heartbeat.cancel()
            if self._active.get(conversation_id) is asyncio.current_task():
                del self._active[conversation_id]  # not a newer claim's worker
            if not self._active:
                self._load.measure(busy=False)
            self._wake.set()

    async def _retry_later(self, lease: Lease) -> float:
        """Leave the conversation to a later attempt, backing off as its failures add up."""
        conversation_id = lease.conversation_id
        failures = self._failures.get(conversation_id, 0) + 1
        self._failures[conversation_id] = failures
        delay = self._retry.delay(failures)
        await self._store.leases.defer(lease, delay_s=delay)
        self._hint_later(conversation_id, delay)
        return delay

    def _hint_later(self, conversation_id: int, delay_s: float) -> None:
        """A deferred conversation is looked at again when its retry is due, not at a scan."""
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(timer)
            self.hint(conversation_id)

        timer = loop.call_later(delay_s + 0.01, fire)
        self._timers.add(timer)

    async def _keep_lease(self, lease: Lease, worker: asyncio.Task[Any] | None) -> None:
        """Renew the lease while the worker runs; stop the worker once it may have lapsed.

        A renewal that fails (the database is away) is retried; when the lease may have
        expired meanwhile, the worker is stopped rather than left acting without it.
        """
        lease_s = self._settings.lease_s
        while True:
            await asyncio.sleep(lease_s / 3)
            try:
                still_ours = await self._store.leases.renew(lease)
            except Exception as exc:
                log.warning(
                    "conversation %s: renewing the lease failed (%s)",
                    lease.conversation_id,
                    type(exc).__name__,
                )
                still_ours = time.monotonic() < lease.valid_until - lease_s / 3
            if not still_ours:
                if worker is not None:
                    worker.cancel()
                return
