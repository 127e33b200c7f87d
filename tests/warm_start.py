"""`python -m bot` without paying for its imports again in every test.

Most process tests are about what one bot process does when it is killed, restarted, frozen or
run beside another: not about how the interpreter starts. Each of those starts used to spend
about 1.4 CPU-seconds importing openai, SQLAlchemy, aiohttp and Bolt before it reached the bot.
Here one server per test worker imports those libraries once (multiprocessing's forkserver, as
gunicorn's `--preload` does) and forks a fresh process for each start, which then runs the
`bot` package as `__main__` exactly as `python -m bot` does: its own environment, working
directory, arguments and log file, signals at their defaults, exit code as Python would give it.
The bot's own modules are never preloaded, so each start imports and configures them afresh.

Tests about start-up itself (what it imports, how it fails) exec `python -m bot` instead
(`BotProcess(cold=True)` and the lean-import tests).

This module imports only the standard library: the forkserver unpickles `run_module_as_main`
by importing it, and it must not drag the test harness (or the bot) in with it.
"""

from __future__ import annotations

import atexit
import io
import multiprocessing
import os
import runpy
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PRELOADED = (
    "openai",
    "sqlalchemy.ext.asyncio",
    "sqlalchemy.orm",
    "sqlalchemy.dialects.sqlite.aiosqlite",
    "sqlalchemy.dialects.postgresql.asyncpg",
    "aiohttp",
    "aiohttp.web",
    "slack_sdk.web.async_client",
    "slack_bolt.async_app",
    "pydantic",
    "pydantic_settings",
    "prometheus_client",
)
"""Third-party libraries every served bot imports; never `bot.*`, Alembic or cryptography,
which the bot imports only when it needs them."""

_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(list(PRELOADED))


def _unbuffered_output_to(stdout_path: str, stderr_path: str) -> None:
    """Send fds 1 and 2 to these files, written through as with PYTHONUNBUFFERED=1."""
    for fd, path in ((1, stdout_path), (2, stderr_path)):
        file = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(file, fd)
        os.close(file)
    sys.stdout = io.TextIOWrapper(
        io.FileIO(1, "w", closefd=False), encoding="utf-8", write_through=True
    )
    sys.stderr = io.TextIOWrapper(
        io.FileIO(2, "w", closefd=False),
        encoding="utf-8",
        errors="backslashreplace",
        write_through=True,
    )


def _exit_code(stop: SystemExit) -> int:
    if stop.code is None:
        return 0
    if isinstance(stop.code, int):
        return stop.code
    print(stop.code, file=sys.stderr)
    return 1


def _finish_like_the_interpreter(code: int) -> None:
    """Wait for non-daemon threads, run atexit handlers, flush, exit: Python's own ending."""
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _search_path(cwd: str, env: Mapping[str, str]) -> list[str]:
    """`sys.path` as `python -m` in `cwd` would have it: the directory, PYTHONPATH, the rest."""
    extra = [entry for entry in env.get("PYTHONPATH", "").split(os.pathsep) if entry]
    return [cwd, *extra, *sys.path[1:]]


def run_module_as_main(
    module: str, argv: list[str], env: dict[str, str], cwd: str, output: tuple[str, str]
) -> None:
    """In the forked child: become `python -m <module> <argv>` run from `cwd` with `env`
    (or `python -c <argv[0]> <argv[1:]>` for the module "-c")."""
    _unbuffered_output_to(*output)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    sys.path[:] = _search_path(cwd, env)
    sys.argv = ["-c", *argv[1:]] if module == "-c" else [module, *argv]
    code = 0
    try:
        if module == "-c":  # `python -c <code> <argv…>`
            exec(compile(argv[0], "<string>", "exec"), {"__name__": "__main__"})
        else:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        code = _exit_code(stop)
    except KeyboardInterrupt:
        traceback.print_exc()
        sys.stderr.flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    except BaseException:
        traceback.print_exc()
        code = 1
    _finish_like_the_interpreter(code)


class WarmProcess:
    """The parts of `subprocess.Popen` the tests use, for a process forked by the server."""

    def __init__(
        self,
        module: str,
        argv: list[str],
        env: Mapping[str, str],
        cwd: Path,
        log_path: Path,
        stderr_path: Path | None = None,
    ) -> None:
        self.args = [sys.executable, *([] if module == "-c" else ["-m"]), module, *argv]
        output = (str(log_path), str(stderr_path or log_path))
        self._process: Any = _CONTEXT.Process(
            target=run_module_as_main,
            args=(module, argv, dict(env), str(cwd), output),
            daemon=True,
        )
        self._process.start()
        self.pid: int = self._process.pid

    @property
    def returncode(self) -> int | None:
        code: int | None = self._process.exitcode
        return code

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        code = self.returncode
        if code is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
        return code

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def run_module(
    module: str, argv: list[str], *, env: Mapping[str, str], cwd: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    """`subprocess.run([sys.executable, "-m", module, *argv], capture_output=True, text=True)`
    on a warm start."""
    with tempfile.TemporaryDirectory() as folder:
        stdout, stderr = Path(folder, "stdout"), Path(folder, "stderr")
        process = WarmProcess(module, argv, env, cwd, stdout, stderr)
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
            raise
        return subprocess.CompletedProcess(
            process.args,
            code,
            stdout.read_text(errors="replace"),
            stderr.read_text(errors="replace"),
        )
