"""How long to wait between checks of a run: fast at first, backing off to a cap.

Most answers take seconds; a fixed 1 s interval (the SDK's default) leaves a finished answer
waiting up to a second. Starting at `initial_s` and growing by `factor` keeps the wait after
completion small for short runs while long runs cost few requests.
"""

from __future__ import annotations

from collections.abc import Iterator


def poll_intervals(*, initial_s: float, max_s: float, factor: float = 1.5) -> Iterator[float]:
    interval = min(initial_s, max_s)
    while True:
        yield interval
        interval = min(interval * factor, max_s)
