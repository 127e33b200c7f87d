"""`python -m bot` with pyinstrument switched on and off by signals, for `bench.run --profile`.

    BENCH_PROFILE_DIR=bench/results BENCH_PROFILE_NAMES=idle,answers python -m bench.profiled_bot

SIGUSR1 starts a profile of the main thread (the event loop and everything it runs); SIGUSR2
stops it and writes `profile-<name>.txt` in BENCH_PROFILE_DIR, taking the names from
BENCH_PROFILE_NAMES in order. The bot's own code knows nothing of this: the launcher lives
in bench/ and only wraps `bot.__main__.main`, so start-up (imports, migrations) stays out of
the windows the benchmark chooses (10 s idle; the 30-at-once burst).

Each window also counts the SQL the bot sent (SQLAlchemy's `before_cursor_execute` and
`commit` events on every engine, whatever thread runs the driver): the totals and the most
frequent statements go at the top of the profile and to `sql-<name>.json`, which the peer
report divides by the answers.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

from pyinstrument import Profiler
from pyinstrument.renderers import ConsoleRenderer

TOP_FLAT = 30
TOP_TREE = 90
TOP_STATEMENTS = 40


class SqlCounter:
    """Statements and commits on every SQLAlchemy engine while a window is open."""

    def __init__(self) -> None:
        self.open = False
        self.statements: Counter[str] = Counter()
        self.commits = 0
        self._lock = threading.Lock()

    def install(self) -> None:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        event.listen(Engine, "before_cursor_execute", self._statement)
        event.listen(Engine, "commit", self._commit)

    def reset(self) -> None:
        with self._lock:
            self.statements.clear()
            self.commits = 0
            self.open = True

    def _statement(self, *args: Any) -> None:
        if self.open:
            with self._lock:
                self.statements[f"{_shape(str(args[2]))}  ← {_caller()}"] += 1

    def _commit(self, *_args: Any) -> None:
        if self.open:
            with self._lock:
                self.commits += 1

    def summary(self) -> dict[str, Any]:
        with self._lock:
            self.open = False
            return {
                "statements": sum(self.statements.values()),
                "commits": self.commits,
                "by_statement": dict(self.statements.most_common(TOP_STATEMENTS)),
            }


def _shape(sql: str) -> str:
    """A statement's first 70 characters, one line: enough to tell which one it is."""
    return re.sub(r"\s+", " ", sql).strip()[:70]


def _caller() -> str:
    """The bot's functions that sent the statement, innermost first. SQLAlchemy's asyncio
    layer runs the driver in a greenlet whose parent holds the awaiting coroutines' frames."""
    import greenlet

    frame = sys._getframe()
    parent = greenlet.getcurrent().parent
    names: list[str] = []
    while frame is not None and len(names) < 2:
        if f"{os.sep}bot{os.sep}" in frame.f_code.co_filename:
            names.append(frame.f_code.co_qualname)
        frame = frame.f_back
        if frame is None and parent is not None:
            frame, parent = parent.gr_frame, None
    return " < ".join(names) or "?"


class Windows:
    def __init__(self, directory: Path, names: list[str], sql: SqlCounter) -> None:
        self._directory = directory
        self._sql = sql
        self._names = names
        self._profiler: Profiler | None = None
        self._started = 0.0

    def start(self, _signum: int, _frame: FrameType | None) -> None:
        if self._profiler is None:
            # async_mode disabled: every sample of the main thread counts, whichever task ran.
            self._profiler = Profiler(interval=0.001, async_mode="disabled")
            self._started = time.monotonic()
            self._sql.reset()
            self._profiler.start()

    def stop(self, _signum: int, _frame: FrameType | None) -> None:
        profiler, self._profiler = self._profiler, None
        if profiler is None:
            return
        session = profiler.stop()
        sql = self._sql.summary()
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
                f"SQL in the window: {sql['statements']} statements, {sql['commits']} commits",
                "",
                *(f"{n:6d}  {shape}" for shape, n in sql["by_statement"].items()),
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
        (self._directory / f"sql-{name}.json").write_text(json.dumps(sql), encoding="utf-8")
        (self._directory / f"profile-{name}.txt").write_text(text, encoding="utf-8")


def main() -> int:
    sql = SqlCounter()
    sql.install()
    windows = Windows(
        Path(os.environ.get("BENCH_PROFILE_DIR", "bench/results")),
        [n for n in os.environ.get("BENCH_PROFILE_NAMES", "").split(",") if n],
        sql,
    )
    signal.signal(signal.SIGUSR1, windows.start)
    signal.signal(signal.SIGUSR2, windows.stop)
    from bot.__main__ import main as bot_main

    return bot_main([])


if __name__ == "__main__":
    sys.exit(main())
