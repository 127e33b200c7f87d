"""The App Home tab: the admin view for admins, how to use the bot for everyone else."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.admin.budgets import period_start
from bot.admin.commands import Period
from bot.admin.home_view import AdminHome, admin_view, user_view
from bot.admin.report import GroupBy, aggregate
from bot.admin.service import AdminService
from bot.listeners.messages import team_of

DAY_S = 86_400.0


def home_view() -> dict[str, Any]:
    return user_view()


async def build_admin_home(admin: AdminService, team_id: str) -> AdminHome:
    now = datetime.now(UTC)
    since = period_start(Period.MONTH, now).timestamp()
    rows = await admin.store.usage_rows(since=since, team_id=team_id)
    return AdminHome(
        month=now.strftime("%B %Y"),
        by_channel=aggregate(rows, GroupBy.CHANNEL),
        top_users=aggregate(rows, GroupBy.USER)[:5],
        feedback=await admin.store.feedback_summary(since=since, team_id=team_id),
        channels=await admin.store.all_channel_settings(team_id),
        errors=await admin.store.errors_since(time.time() - DAY_S, team_id=team_id),
    )


def register(app: AsyncApp, admin: AdminService) -> None:
    async def publish_home(client: Any, body: dict[str, Any], event: dict[str, Any]) -> None:
        if event.get("tab", "home") != "home":
            return
        user_id = str(event["user"])
        team_id = team_of(body, event)
        if await admin.is_admin(client, user_id, team_id=team_id):
            view = admin_view(await build_admin_home(admin, team_id))
        else:
            view = user_view()
        await client.views_publish(user_id=user_id, view=view)

    app.event("app_home_opened")(publish_home)
