"""`python -m bot`: settings → database → Slack → HTTP server or Socket Mode, until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from bot.settings import Settings, SettingsError, load_settings


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"bot: {exc}", file=sys.stderr)
        return 2
    from bot.logs import configure

    configure(settings.log_level, settings.log_format)  # LOG_FORMAT=json: one object a line
    _quiet_chatty_libraries(settings.log_level)
    if argv[:1] == ["purge"]:
        return _purge(settings, argv[1:])
    if argv[:1] == ["usage"]:
        return _usage(settings, argv[1:])
    if argv:
        print(
            f"bot: unknown command {argv[0]!r}; use 'python -m bot', "
            "'python -m bot purge' or 'python -m bot usage'",
            file=sys.stderr,
        )
        return 2
    from bot.runtime import StartupError, serve

    try:
        asyncio.run(serve(settings, stop_signals=(signal.SIGTERM, signal.SIGINT)))
    except StartupError as exc:
        print(f"bot: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _purge(settings: Settings, argv: list[str]) -> int:
    from bot.retention import parse_purge_args, purge

    older_than_days = parse_purge_args(argv)
    removed = asyncio.run(purge(settings, older_than_days=older_than_days))
    print(f"deleted {removed} conversation(s) idle for more than {older_than_days:g} days")
    return 0


def _usage(settings: Settings, argv: list[str]) -> int:
    """`python -m bot usage [--since DATE] [--until DATE] [--by …] [--format …]`."""
    from bot.admin.cli import parse_usage_args, usage_report

    print(asyncio.run(usage_report(settings, parse_usage_args(argv))))
    return 0


def _quiet_chatty_libraries(level: str) -> None:
    """httpx2 and slack_sdk log every request (with URLs) at INFO; keep those at DEBUG only."""
    if level != "DEBUG":
        for name in (
            "httpx",
            "httpx2",
            "openai",
            "slack_sdk",
            "slack_bolt",
            "alembic",
            "aiohttp.access",
        ):
            logging.getLogger(name).setLevel(logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())
