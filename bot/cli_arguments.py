"""The maintenance commands' arguments, apart from the commands themselves.

`python -m bot --help`, `usage --help` and `purge --help` build the whole parser: this module
imports argparse and the report's choices only, so asking for help starts no database driver,
SQLAlchemy or OpenAI SDK (tests/unit/test_lean_imports.py).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from bot.admin.report import Format, GroupBy


def add_purge_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--older-than-days",
        type=_days,
        required=True,
        metavar="N",
        help="delete conversations with no activity for more than N days (may be fractional)",
    )


def _days(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {raw!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


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
