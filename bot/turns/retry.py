"""The one retry policy: exponential backoff with full jitter, shared by the turn engine
(an assistant API that is unavailable) and the dispatcher (a turn step that failed).

Full jitter (a delay drawn between zero and the exponential bound) keeps many processes that
failed at the same moment from retrying in lockstep. `RETRY_BASE_S=0` makes every delay zero.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    base_s: float = 0.5
    cap_s: float = 30.0

    def bound(self, attempt: int) -> float:
        """The longest delay before retry number `attempt` (1 for the first retry)."""
        return min(self.cap_s, self.base_s * 2.0 ** max(0, attempt - 1))

    def delay(self, attempt: int) -> float:
        return random.uniform(0.0, self.bound(attempt))
