"""`python -m bot usage`: the stored usage, grouped, as a table, CSV or JSON."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

from bot.admin.report import Format, GroupBy, aggregate, render
from bot.admin.store import AdminStore
from bot.settings import Settings
from bot.store.db import create_engine, migrate


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


async def usage_report(settings: Settings, args: argparse.Namespace) -> str:
    engine = create_engine(settings.database_url)
    try:
        await migrate(engine)
        until = args.until + timedelta(days=1) if args.until else None
        rows = await AdminStore(engine).usage_rows(
            since=args.since.timestamp() if args.since else None,
            until=until.timestamp() if until else None,
        )
    finally:
        await engine.dispose()
    return render(aggregate(rows, args.by), by=args.by, fmt=args.fmt)
