"""May this message be answered, given the limits and what was spent so far? (pure)"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.admin.commands import Budget, BudgetUnit, Period


class Scope:
    USER = "user"
    CHANNEL = "channel"


@dataclass(frozen=True)
class Limit:
    """A budget and whose spending it caps ("user": the asker's own, "channel": everyone's)."""

    scope: str
    budget: Budget
    source: str
    """Where it comes from, for the refusal: "this channel's budget" or a setting's name."""


@dataclass(frozen=True)
class Spent:
    tokens: int
    cost_usd: float


@dataclass(frozen=True)
class Refusal:
    limit: Limit
    spent: Spent
    resets_at: datetime

    def text(self) -> str:
        who = "your" if self.limit.scope == Scope.USER else "this channel's"
        return (
            f"I can't answer this one: {who} usage has reached {self.limit.source} "
            f"({self.limit.budget.describe()}). It resets "
            f"{self.resets_at.strftime('%Y-%m-%d %H:%M')} UTC."
        )


def period_start(period: Period, now: datetime) -> datetime:
    """The start (UTC) of the day or month `now` is in."""
    now = now.astimezone(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return day if period is Period.DAY else day.replace(day=1)


def period_end(period: Period, now: datetime) -> datetime:
    start = period_start(period, now)
    if period is Period.DAY:
        return start + timedelta(days=1)
    days = calendar.monthrange(start.year, start.month)[1]
    return start + timedelta(days=days)


def decide(limits: list[tuple[Limit, Spent]], *, now: datetime) -> Refusal | None:
    """The first limit already reached (spent ≥ budget), else None: the message may go ahead.

    A turn's cost is known only after it ran, so a limit stops the message after the one that
    crossed it; with `spent` summed across processes from the shared usage table.
    """
    for limit, spent in limits:
        used = spent.cost_usd if limit.budget.unit is BudgetUnit.USD else spent.tokens
        if used >= limit.budget.amount:
            return Refusal(limit, spent, period_end(limit.budget.period, now))
    return None
