"""`python -m bot usage`: the stored usage, grouped, as a table, CSV or JSON."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

from bot.admin.report import Format, GroupBy, aggregate, render
from bot.admin.store import AdminStore
from bot.maintenance import CommandError
from bot.store.schema import open_existing_database


def parse_usage_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bot usage", description="Print the usage and estimated cost."
    )
    add_usage_arguments(parser)
    return parser.parse_args(argv)


def add_usage_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", type=_date, help="first day, YYYY-MM-DD (UTC), inclusive")
    parser.add_argument("--until", type=_date, help="last day, YYYY-MM-DD (UTC), inclusive")
    parser.add_argument(
        "--by", type=GroupBy, choices=list(GroupBy), default=GroupBy.CHANNEL, help="group by"
    )
    parser.add_argument(
        "--format", type=Format, choices=list(Format), default=Format.TABLE, dest="fmt"
    )


def _date(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-01-31") from None


async def usage_report(url: str, args: argparse.Namespace) -> str:
    """The report for the database the bot created at `url` (never created or migrated)."""
    if args.since and args.until and args.since > args.until:
        raise CommandError(
            f"--since {args.since:%Y-%m-%d} is after --until {args.until:%Y-%m-%d}: "
            "swap them, or leave one out"
        )
    engine = await open_existing_database(url)
    try:
        until = args.until + timedelta(days=1) if args.until else None
        rows = await AdminStore(engine).usage_rows(
            since=args.since.timestamp() if args.since else None,
            until=until.timestamp() if until else None,
        )
    finally:
        await engine.dispose()
    return render(aggregate(rows, args.by), by=args.by, fmt=args.fmt)
