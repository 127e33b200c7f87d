"""`--against <ref>`: another commit's bot, built from git in the same run, so a regression
shows as a ratio. `git archive <ref> bot` is unpacked into a temporary directory, and the
bot processes run there (`cwd` and PYTHONPATH), with this checkout's virtualenv."""

from __future__ import annotations

import contextlib
import io
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
THIS_CHECKOUT = "this checkout"


@dataclass(frozen=True)
class BotSource:
    """Which bot a bot process runs: `path` None is this checkout's bot/."""

    name: str
    path: Path | None = None


def git(*args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, check=True).stdout


def describe(ref: str) -> str:
    """`main~1` → `main~1 (5b0bedb)`; raises if git does not know the ref."""
    commit = git("rev-parse", "--short", f"{ref}^{{commit}}").decode().strip()
    return f"{ref} ({commit})" if commit != ref else commit


@contextlib.contextmanager
def checked_out(ref: str) -> Iterator[BotSource]:
    """The bot package at `ref`, unpacked into a temporary directory for the block."""
    name = describe(ref)
    archive = git("archive", "--format=tar", f"{ref}^{{commit}}", "bot")
    with tempfile.TemporaryDirectory(prefix="bench-against-") as directory:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(directory, filter="data")
        yield BotSource(name, Path(directory))
