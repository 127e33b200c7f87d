"""`python -m bot usage`: the stored usage, grouped, as a table, CSV, JSON or Prometheus text."""

from __future__ import annotations

import argparse
from datetime import timedelta

from sqlalchemy import column, select, table
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.admin.report import GroupBy, aggregate, render
from bot.admin.store import AdminStore
from bot.maintenance import CommandError
from bot.store.schema import open_existing_database


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
        names = await workspace_names(engine) if args.by is GroupBy.TEAM else {}
    finally:
        await engine.dispose()
    return render(aggregate(rows, args.by), by=args.by, fmt=args.fmt, names=names)


_INSTALLATIONS = table(
    "slack_installations", column("team_id"), column("team_name"), column("installed_at")
)


async def workspace_names(engine: AsyncEngine) -> dict[str, str]:
    """Workspace names as their installations stored them (OAuth mode), the newest winning.

    Slack user and channel names are not stored, so those groups show their ids alone."""
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(_INSTALLATIONS.c.team_id, _INSTALLATIONS.c.team_name)
            .where(_INSTALLATIONS.c.team_id.is_not(None), _INSTALLATIONS.c.team_name.is_not(None))
            .order_by(_INSTALLATIONS.c.installed_at)
        )
        return {str(team_id): str(name) for team_id, name in rows}
