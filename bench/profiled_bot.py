"""`python -m bot` with pyinstrument switched on and off by signals, for `bench.run --profile`.

    BENCH_PROFILE_DIR=bench/results BENCH_PROFILE_NAMES=idle,answers python -m bench.profiled_bot

SIGUSR1 starts a profile of the main thread (the event loop and everything it runs); SIGUSR2
stops it and writes `profile-<name>.txt` in BENCH_PROFILE_DIR, taking the names from
BENCH_PROFILE_NAMES in order. The bot's own code knows nothing of this: the launcher lives
in bench/ and only wraps `bot.__main__.main`, so start-up (imports, migrations) stays out of
the windows the benchmark chooses (10 s idle; the 30-at-once burst).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from pyinstrument import Profiler
from pyinstrument.renderers import ConsoleRenderer

TOP_FLAT = 30
TOP_TREE = 90


class Windows:
    def __init__(self, directory: Path, names: list[str]) -> None:
        self._directory = directory
        self._names = names
        self._profiler: Profiler | None = None
        self._started = 0.0

    def start(self, _signum: int, _frame: FrameType | None) -> None:
        if self._profiler is None:
            # async_mode disabled: every sample of the main thread counts, whichever task ran.
            self._profiler = Profiler(interval=0.001, async_mode="disabled")
            self._started = time.monotonic()
            self._profiler.start()

    def stop(self, _signum: int, _frame: FrameType | None) -> None:
        profiler, self._profiler = self._profiler, None
        if profiler is None:
            return
        session = profiler.stop()
        seconds = time.monotonic() - self._started
        name = self._names.pop(0) if self._names else f"window-{int(self._started)}"
        own = ConsoleRenderer(flat=True, flat_time="self", show_all=False).render(session)
        leaves = ConsoleRenderer(flat=True, flat_time="self", show_all=True).render(session)
        tree = ConsoleRenderer(unicode=True, show_all=False, short_mode=False).render(session)
        text = "\n".join(
            [
                f"# pyinstrument profile: {name} ({seconds:.1f} s window, main thread, "
                "1 ms sampling, wall clock: time waiting in select/epoll is the idle loop)",
                "",
                f"## Top {TOP_FLAT} by own time, library frames counted in the frame that "
                "called them (where the bot's code spends)",
                "",
                *own.splitlines()[:TOP_FLAT],
                "",
                f"## Top {TOP_FLAT} functions by own time, every frame",
                "",
                *leaves.splitlines()[:TOP_FLAT],
                "",
                f"## Call tree (first {TOP_TREE} lines)",
                "",
                *tree.splitlines()[:TOP_TREE],
                "",
            ]
        )
        self._directory.mkdir(parents=True, exist_ok=True)
        (self._directory / f"profile-{name}.txt").write_text(text, encoding="utf-8")


def main() -> int:
    windows = Windows(
        Path(os.environ.get("BENCH_PROFILE_DIR", "bench/results")),
        [n for n in os.environ.get("BENCH_PROFILE_NAMES", "").split(",") if n],
    )
    signal.signal(signal.SIGUSR1, windows.start)
    signal.signal(signal.SIGUSR2, windows.stop)
    from bot.__main__ import main as bot_main

    return bot_main([])


if __name__ == "__main__":
    sys.exit(main())
