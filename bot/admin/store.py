"""The admin tables' reads and writes, each a short transaction (SQLite and PostgreSQL).

Everything several processes must agree on (settings, budgets' spending) is read from the
database each time, so a change made on one process holds on all of them at the next turn.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, Row, Select, and_, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.admin.budgets import Spent
from bot.admin.channel_settings import ChannelSettings, settings_of
from bot.admin.commands import Budget
from bot.admin.report import UsageRow
from bot.assistants.base import Usage
from bot.store.admin_models import ChannelSetting, SettingsChange, TurnUsage
from bot.store.database import dialect_insert
from bot.store.models import Conversation, Feedback, InboxMessage, Turn

ERROR_OUTCOMES = (
    "failed",
    "expired",
    "cancelled",
    "requires_action",
    "unavailable",
    "rejected",
)


@dataclass(frozen=True)
class Change:
    field: str
    old: str | None
    new: str | None


@dataclass(frozen=True)
class FeedbackSummary:
    up: int
    down: int
    latest_reasons: list[tuple[float, str, str]]
    """(when, user, reason) of the latest 👎 with a reason, newest first."""


@dataclass(frozen=True)
class ErrorSummary:
    count: int
    most_common: str | None


_USAGE_FIELDS = (
    "model",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_usd",
    "at",
)


def channel_settings_query(team_id: str, channel_id: str) -> Select[Any]:
    return select(ChannelSetting).where(
        ChannelSetting.team_id == team_id, ChannelSetting.channel_id == channel_id
    )


def channel_settings_of(row: Row[Any] | None, team_id: str, channel_id: str) -> ChannelSettings:
    """The settings a `channel_settings_query` row holds; the defaults without one."""
    return ChannelSettings(team_id, channel_id) if row is None else settings_of(row._mapping)


class AdminStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._record_usage: Any = None

    def _insert(self, table: Any) -> Any:
        return dialect_insert(self.engine)(table)

    # Channel settings -----------------------------------------------------------------

    async def channel_settings(self, team_id: str, channel_id: str) -> ChannelSettings:
        async with self.engine.connect() as connection:
            row = (await connection.execute(channel_settings_query(team_id, channel_id))).first()
        return channel_settings_of(row, team_id, channel_id)

    async def all_channel_settings(self, team_id: str) -> list[ChannelSettings]:
        async with self.engine.connect() as connection:
            rows = await connection.execute(
                select(ChannelSetting)
                .where(ChannelSetting.team_id == team_id)
                .order_by(ChannelSetting.channel_id)
            )
            found = [settings_of(row._mapping) for row in rows]
        return [settings for settings in found if not settings.is_default]

    async def change_settings(
        self, team_id: str, channel_id: str, *, user_id: str, **values: Any
    ) -> list[Change]:
        """Set some of a channel's settings (None resets one); the changes, as logged.

        The row is locked for the read-modify-write, so two admins changing different
        settings at once on two processes both win.
        """
        now = time.time()
        async with self.engine.begin() as connection:
            await connection.execute(
                self._insert(ChannelSetting)
                .values(team_id=team_id, channel_id=channel_id, enabled=True, updated_at=now)
                .on_conflict_do_nothing(index_elements=["team_id", "channel_id"])
            )
            row = (
                await connection.execute(
                    select(ChannelSetting)
                    .where(
                        ChannelSetting.team_id == team_id, ChannelSetting.channel_id == channel_id
                    )
                    .with_for_update()
                )
            ).one()
            before = settings_of(row._mapping)
            columns: dict[str, Any] = {}
            for name, value in values.items():
                if name == "budget":
                    budget: Budget | None = value
                    columns["budget_amount"] = budget.amount if budget else None
                    columns["budget_unit"] = budget.unit.value if budget else None
                    columns["budget_period"] = budget.period.value if budget else None
                elif name == "mcp_servers":
                    columns[name] = None if value is None else json.dumps(list(value))
                else:
                    columns[name] = value
            await connection.execute(
                update(ChannelSetting)
                .where(ChannelSetting.id == row.id)
                .values(**columns, updated_by=user_id, updated_at=now)
            )
            after_row = (
                await connection.execute(select(ChannelSetting).where(ChannelSetting.id == row.id))
            ).one()
            after = settings_of(after_row._mapping)
            changes = [
                Change(name, before.value_of(name), after.value_of(name))
                for name in values
                if before.value_of(name) != after.value_of(name)
            ]
            for change in changes:
                await connection.execute(
                    self._insert(SettingsChange).values(
                        team_id=team_id,
                        channel_id=channel_id,
                        user_id=user_id,
                        field=change.field,
                        old_value=change.old,
                        new_value=change.new,
                        at=now,
                    )
                )
            return changes

    # Usage ----------------------------------------------------------------------------

    async def record_usage(
        self, *, turn_id: int, conversation_id: int, usage: Usage, cost_usd: float | None
    ) -> bool:
        """Add what one or more of a turn's model requests used to the turn's row (the first
        report creates it); True if stored (False when the conversation is gone).

        One statement: the turn's place (team, channel) and asker (its first message's
        author) are read by the INSERT itself."""
        async with self.engine.begin() as connection:
            result = await connection.execute(
                self._record_usage_statement(),
                {
                    "for_turn": turn_id,
                    "for_conversation": conversation_id,
                    "model": usage.model,
                    "input_tokens": usage.input_tokens,
                    "cached_input_tokens": usage.cached_input_tokens,
                    "output_tokens": usage.output_tokens,
                    "reasoning_tokens": usage.reasoning_tokens,
                    "cost_usd": cost_usd,
                    "at": time.time(),
                },
            )
            return bool(result.rowcount)

    def _record_usage_statement(self) -> Any:
        """Built once per store (its compiled form is then cached): INSERT … SELECT from the
        conversation, adding to the turn's row when it exists."""
        if self._record_usage is None:
            asker = (
                select(InboxMessage.user_id)
                .where(InboxMessage.turn_id == bindparam("for_turn"))
                .order_by(InboxMessage.ts)
                .limit(1)
                .scalar_subquery()
            )
            values = {
                "turn_id": bindparam("for_turn", type_=Integer),
                "team_id": Conversation.team_id,
                "channel_id": Conversation.channel_id,
                "user_id": func.coalesce(asker, ""),
                **{
                    name: bindparam(name, type_=TurnUsage.__table__.c[name].type)
                    for name in _USAGE_FIELDS
                },
            }
            insert = self._insert(TurnUsage).from_select(
                list(values),
                select(*values.values()).where(Conversation.id == bindparam("for_conversation")),
            )
            added = insert.excluded
            row = TurnUsage.__table__.c
            self._record_usage = insert.on_conflict_do_update(
                index_elements=["turn_id"],
                set_={
                    "input_tokens": row.input_tokens + added.input_tokens,
                    "cached_input_tokens": row.cached_input_tokens + added.cached_input_tokens,
                    "output_tokens": row.output_tokens + added.output_tokens,
                    "reasoning_tokens": row.reasoning_tokens + added.reasoning_tokens,
                    "cost_usd": func.coalesce(
                        row.cost_usd + added.cost_usd, row.cost_usd, added.cost_usd
                    ),
                },
            )
        return self._record_usage

    async def spent(
        self,
        team_id: str,
        *,
        since: float,
        channel_id: str | None = None,
        user_id: str | None = None,
    ) -> Spent:
        conditions = [TurnUsage.team_id == team_id, TurnUsage.at >= since]
        if channel_id is not None:
            conditions.append(TurnUsage.channel_id == channel_id)
        if user_id is not None:
            conditions.append(TurnUsage.user_id == user_id)
        async with self.engine.connect() as connection:
            row = (
                await connection.execute(
                    select(
                        func.coalesce(
                            func.sum(TurnUsage.input_tokens + TurnUsage.output_tokens), 0
                        ),
                        func.coalesce(func.sum(TurnUsage.cost_usd), 0.0),
                    ).where(and_(*conditions))
                )
            ).one()
        return Spent(tokens=int(row[0]), cost_usd=float(row[1] or 0.0))

    async def usage_rows(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        team_id: str | None = None,
        channel_id: str | None = None,
        user_id: str | None = None,
    ) -> list[UsageRow]:
        conditions = []
        if since is not None:
            conditions.append(TurnUsage.at >= since)
        if until is not None:
            conditions.append(TurnUsage.at < until)
        if team_id is not None:
            conditions.append(TurnUsage.team_id == team_id)
        if channel_id is not None:
            conditions.append(TurnUsage.channel_id == channel_id)
        if user_id is not None:
            conditions.append(TurnUsage.user_id == user_id)
        async with self.engine.connect() as connection:
            rows = await connection.execute(
                select(
                    TurnUsage.team_id,
                    TurnUsage.channel_id,
                    TurnUsage.user_id,
                    TurnUsage.model,
                    TurnUsage.input_tokens,
                    TurnUsage.cached_input_tokens,
                    TurnUsage.output_tokens,
                    TurnUsage.reasoning_tokens,
                    TurnUsage.cost_usd,
                    TurnUsage.at,
                )
                .where(and_(True, *conditions))
                .order_by(TurnUsage.at)
            )
            return [
                UsageRow(
                    team_id=row.team_id,
                    channel_id=row.channel_id,
                    user_id=row.user_id,
                    model=row.model,
                    input_tokens=row.input_tokens,
                    cached_input_tokens=row.cached_input_tokens,
                    output_tokens=row.output_tokens,
                    reasoning_tokens=row.reasoning_tokens,
                    cost_usd=row.cost_usd,
                    at=row.at,
                )
                for row in rows
            ]

    # Feedback and errors --------------------------------------------------------------

    async def set_feedback_reason(
        self, *, turn_id: int, user_id: str, reason: str, team_id: str | None = None
    ) -> bool:
        conditions = [Feedback.turn_id == turn_id, Feedback.user_id == user_id]
        if team_id is not None:
            conditions.append(Feedback.turn_id.in_(_team_turns(team_id)))
        async with self.engine.begin() as connection:
            result = await connection.execute(
                update(Feedback).where(*conditions).values(reason=reason)
            )
            return bool(result.rowcount)

    async def feedback_summary(
        self, *, since: float, latest: int = 5, team_id: str | None = None
    ) -> FeedbackSummary:
        """👍/👎 since `since`: one workspace's when `team_id` is given (OAuth installs share
        one database, and one workspace's admins see only their own)."""
        scoped: list[Any] = []
        if team_id is not None:
            scoped.append(Feedback.turn_id.in_(_team_turns(team_id)))
        async with self.engine.connect() as connection:
            votes = await connection.execute(
                select(Feedback.value, func.count())
                .where(Feedback.created_at >= since, *scoped)
                .group_by(Feedback.value)
            )
            counts = {str(value): int(count) for value, count in votes}
            reasons = await connection.execute(
                select(Feedback.created_at, Feedback.user_id, Feedback.reason)
                .where(Feedback.value == "down", Feedback.reason.is_not(None), *scoped)
                .order_by(Feedback.created_at.desc())
                .limit(latest)
            )
            return FeedbackSummary(
                up=int(counts.get("up", 0)),
                down=int(counts.get("down", 0)),
                latest_reasons=[(at, user, str(reason)) for at, user, reason in reasons],
            )

    async def errors_since(self, since: float, *, team_id: str | None = None) -> ErrorSummary:
        scoped: list[Any] = []
        if team_id is not None:
            scoped.append(Turn.id.in_(_team_turns(team_id)))
        async with self.engine.connect() as connection:
            rows = await connection.execute(
                select(Turn.outcome, func.count())
                .where(Turn.outcome.in_(ERROR_OUTCOMES), Turn.created_at >= since, *scoped)
                .group_by(Turn.outcome)
            )
            counts = Counter({str(outcome): int(n) for outcome, n in rows})
        common = counts.most_common(1)
        return ErrorSummary(sum(counts.values()), common[0][0] if common else None)


def _team_turns(team_id: str) -> Any:
    """The ids of one workspace's turns."""
    return (
        select(Turn.id)
        .join(Conversation, Conversation.id == Turn.conversation_id)
        .where(Conversation.team_id == team_id)
    )
