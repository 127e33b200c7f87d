"""`python -m bot`: settings → database → Slack → HTTP server or Socket Mode, until SIGTERM.

`python -m bot COMMAND …` runs one of the maintenance commands instead; `--help` lists them.
The command line is parsed before the settings are read, so `--help` needs no settings.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from bot import __version__
from bot.cli_arguments import add_purge_arguments, add_usage_arguments

Environment = Mapping[str, str]

DISTRIBUTION = "slack-assistant-bot"


@dataclass(frozen=True)
class Command:
    """A subcommand: its name and help, its arguments, and what it runs with the environment.

    Commands read only the settings they need (`bot.maintenance`), not the bot's full set."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[Environment, argparse.Namespace], int]


def _purge(env: Environment, args: argparse.Namespace) -> int:
    from bot.maintenance import database_url_from, one_line_errors, openai_settings_from
    from bot.retention import purge_database

    def job() -> int:
        older_than_days = float(args.older_than_days)
        url, openai = database_url_from(env), openai_settings_from(env)
        print(asyncio.run(purge_database(url, openai, older_than_days=older_than_days)).summary)
        return 0

    return one_line_errors(job)


def _usage(env: Environment, args: argparse.Namespace) -> int:
    from bot.admin.cli import usage_report
    from bot.maintenance import database_url_from, one_line_errors

    def job() -> int:
        print(asyncio.run(usage_report(database_url_from(env), args)))
        return 0

    return one_line_errors(job)


COMMANDS: tuple[Command, ...] = (
    Command(
        name="purge",
        help="delete conversations idle for longer than N days, here and at OpenAI",
        add_arguments=add_purge_arguments,
        run=_purge,
    ),
    Command(
        name="usage",
        help="print answers, tokens and estimated cost, by team, channel, user, model or day",
        add_arguments=add_usage_arguments,
        run=_usage,
    ),
)
"""Add a command here: it then shows in `--help` and runs with the environment."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot",
        description="A Slack assistant bot backed by OpenAI. Without a command it runs the bot "
        "(HTTP, or Socket Mode when SLACK_APP_TOKEN is set) until SIGTERM. Settings come from "
        "the environment or a .env file; see .env.example.",
    )
    parser.add_argument("--version", action="version", version=f"{DISTRIBUTION} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for command in COMMANDS:
        sub = commands.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    run: Callable[[Environment, argparse.Namespace], int] | None = getattr(args, "run", None)
    if run is not None:
        return _run_command(run, args)
    return _serve()


def _serve() -> int:
    """The bot itself. Its settings (and with them SQLAlchemy) are imported here, not at the
    top: `--version`, `--help` and the maintenance commands do not need them."""
    gc.disable()  # until the bot is ready: see _keep_start_up
    from bot.settings import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"bot: {exc}", file=sys.stderr)
        return 2
    from bot.logs import configure
    from bot.redact import configured_secrets

    # LOG_FORMAT=json: one object a line; never a secret, at any level.
    configure(settings.log_level, settings.log_format, secrets=configured_secrets(settings))
    _quiet_chatty_libraries(settings.log_level)
    from bot.preflight import StartupError
    from bot.runtime import serve

    try:
        asyncio.run(
            serve(settings, stop_signals=(signal.SIGTERM, signal.SIGINT), on_ready=_keep_start_up)
        )
    except StartupError as exc:
        print(f"bot: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _keep_start_up() -> None:
    """What start-up built (the imports' classes, functions, pydantic and SQLAlchemy models,
    the SDK types the start-up checks import, the engine, Bolt: most of the process's
    objects) lives as long as the process, so the cyclic garbage collector is off until the
    bot is ready and then moves it all to its permanent generation: no collection walks it
    again, neither later full collections nor those the interpreter makes at exit. A start
    costs a third less CPU (about 0.15-0.25 s of 1.1-1.5 s before `ready`, 0.25-0.4 s of
    0.3-0.5 s from SIGTERM to exit); the price is start-up's cyclic garbage (well under
    1 MiB), never freed, and a collector off while the bot starts (seconds)."""
    gc.freeze()
    gc.enable()


def _run_command(
    run: Callable[[Environment, argparse.Namespace], int], args: argparse.Namespace
) -> int:
    from bot.logs import configure
    from bot.maintenance import environment, log_settings_from

    env = environment()
    level, log_format = log_settings_from(env)
    configure(level, log_format)
    _quiet_chatty_libraries(level)
    return run(env, args)


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
        # azure-identity warns of every failed sign-in; the bot says it in one line itself.
        logging.getLogger("azure").setLevel(logging.ERROR)


if __name__ == "__main__":
    sys.exit(main())
