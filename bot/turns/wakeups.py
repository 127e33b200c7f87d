"""Wake a turn waiting on a run the moment its end is known, instead of at its next poll.

`_wait_for_run` (bot/turns/runner.py) waits here between checks of a background run: a
notification (an OpenAI webhook received by this process, bot/webhooks.py) ends the wait at
once; otherwise the wait times out and the run is polled as before. One `asyncio.Event` per
run id, created by whichever comes first, so a notification that arrives before the turn
waits (a fast model, a slow database) is not lost: the next wait returns at once.

In-process only: a webhook that reaches another process of the bot is recorded in the
database there (deduplication) and wakes nothing here; the turn's holder sees the run's end
at its next check, at most the safety-net interval later (OPENAI_WEBHOOK_POLL_S).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

MAX_UNCLAIMED = 10_000
"""Notifications kept for runs nobody here waits on (another process's runs, duplicates)."""


class RunWakeups:
    def __init__(self, *, max_unclaimed: int = MAX_UNCLAIMED) -> None:
        self._events: OrderedDict[str, asyncio.Event] = OrderedDict()
        self._waiting: set[str] = set()
        self._max_unclaimed = max_unclaimed

    def notify(self, run_id: str) -> None:
        """The run has ended: wake its waiter now, or the next one that comes."""
        event = self._events.get(run_id)
        if event is None:
            event = self._events[run_id] = asyncio.Event()
        event.set()
        self._events.move_to_end(run_id)
        self._trim()

    async def wait(self, run_id: str, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait up to `timeout` seconds; True if the run was announced as ended."""
        event = self._events.get(run_id)
        if event is None:
            event = self._events[run_id] = asyncio.Event()
        self._waiting.add(run_id)
        try:
            async with asyncio.timeout(max(0.0, timeout)):
                await event.wait()
            return True
        except TimeoutError:
            return False
        finally:
            self._waiting.discard(run_id)
            if self._events.get(run_id) is event:
                del self._events[run_id]

    def pending(self, run_id: str) -> bool:
        """Whether an announcement for the run waits to be claimed."""
        event = self._events.get(run_id)
        return event is not None and event.is_set()

    def _trim(self) -> None:
        while len(self._events) > self._max_unclaimed:
            oldest = next(iter(self._events))
            if oldest in self._waiting:  # a waiter holds the oldest: keep it, stop trimming
                break
            del self._events[oldest]
