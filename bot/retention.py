"""`python -m bot purge --older-than-days N`: forget conversations idle for longer than N days.

Deletes the stored mapping, messages, turns and feedback, and the assistant thread or
Conversation at OpenAI when it belongs to the configured backend; retries the deletes at
OpenAI that failed before (an uninstall's too: `remote_deletions`).
"""

from __future__ import annotations

import argparse
import logging
import time

from bot.assistants import make_backend
from bot.remote_deletions import delete_recorded
from bot.settings import Settings
from bot.store.db import create_engine, migrate
from bot.store.repository import Store

log = logging.getLogger(__name__)


def add_purge_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--older-than-days",
        type=_days,
        required=True,
        metavar="N",
        help="delete conversations with no activity for more than N days (may be fractional)",
    )


def parse_purge_args(argv: list[str]) -> float:
    parser = argparse.ArgumentParser(prog="python -m bot purge", description=__doc__)
    add_purge_arguments(parser)
    return float(parser.parse_args(argv).older_than_days)


def _days(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {raw!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


async def purge(settings: Settings, *, older_than_days: float) -> int:
    """Delete conversations idle for longer than the given age; how many were deleted."""
    engine = create_engine(settings.database_url, pool_size=settings.db_pool_size)
    backend = make_backend(settings, engine)
    try:
        await migrate(engine)
        cutoff = time.time() - older_than_days * 86400
        removed = await Store(engine).delete_conversations_before(cutoff)
        # Those just deleted, and any an uninstall or an earlier purge could not delete.
        await delete_recorded(engine, backend)
        log.info(
            "purge: deleted %s conversations idle for over %s days", len(removed), older_than_days
        )
        return len(removed)
    finally:
        await backend.close()
        await engine.dispose()
