"""Per-user rate limit: a sliding one-minute window, kept in this process's memory."""

from __future__ import annotations

import time
from collections import defaultdict, deque


class UserRateLimiter:
    def __init__(self, per_minute: int, *, window_s: float = 60.0) -> None:
        self._per_minute = per_minute
        self._window_s = window_s
        self._seen: defaultdict[str, deque[float]] = defaultdict(deque)

    def allow(self, user_id: str) -> bool:
        """True if the user may send another message now (0 per minute means no limit)."""
        if self._per_minute <= 0:
            return True
        now = time.monotonic()
        seen = self._seen[user_id]
        while seen and seen[0] <= now - self._window_s:
            seen.popleft()
        if len(seen) >= self._per_minute:
            return False
        seen.append(now)
        return True
