"""What the maintenance commands (`usage`, `purge`) share.

They need only `DATABASE_URL` (not the Slack or OpenAI settings), they open the database the
bot created without creating or migrating it, and anything in the way is one line.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping

from bot.settings import Settings, SettingsError, database_url, load_settings

_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_UNUSED_SLACK = {"SLACK_BOT_TOKEN": "xoxb-unused-by-maintenance", "SLACK_SIGNING_SECRET": "unused"}


def environment() -> Mapping[str, str]:
    """The process environment plus `.env` (which never overrides it), as the bot reads it."""
    from dotenv import load_dotenv

    load_dotenv(".env", override=False)
    return os.environ


def database_url_from(env: Mapping[str, str]) -> str:
    """DATABASE_URL as an async SQLAlchemy URL (`SettingsError` if malformed)."""
    return database_url(env.get("DATABASE_URL", "").strip() or None)


def openai_settings_from(env: Mapping[str, str]) -> Settings | None:
    """The bot's settings for talking to OpenAI, or None when OPENAI_API_KEY is not set.

    The Slack settings play no part in a maintenance command and need not be set.
    """
    if not env.get("OPENAI_API_KEY", "").strip():
        return None
    if env.get("SLACK_CLIENT_ID", "").strip():
        return load_settings(env)
    return load_settings({**_UNUSED_SLACK, **env})


def log_settings_from(env: Mapping[str, str]) -> tuple[str, str]:
    """LOG_LEVEL and LOG_FORMAT, falling back to INFO and text rather than refusing to run."""
    level = env.get("LOG_LEVEL", "").strip().upper()
    log_format = env.get("LOG_FORMAT", "").strip().lower()
    return (level if level in _LEVELS else "INFO", "json" if log_format == "json" else "text")


class CommandError(Exception):
    """A maintenance command was asked something it cannot do; the message is one line."""


def one_line_errors(job: Callable[[], int]) -> int:
    """Run a command; a wrong setting or argument, or a database that is not there or not
    ready, is one line on stderr and a non-zero exit code, never a traceback."""
    from bot.store.db import is_database_outage
    from bot.store.schema import DatabaseNotReady

    try:
        return job()
    except (SettingsError, CommandError) as exc:
        print(f"bot: {exc}", file=sys.stderr)
        return 2
    except DatabaseNotReady as exc:
        print(f"bot: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        if not is_database_outage(exc):
            raise
        reason = getattr(exc, "orig", None) or exc
        detail = (str(reason).splitlines() or [""])[0][:160]
        print(
            f"bot: lost the database in DATABASE_URL ({type(reason).__name__}: {detail})",
            file=sys.stderr,
        )
        return 1
