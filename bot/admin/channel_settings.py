"""A channel's own settings as the admin tables store them (None: the default applies)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bot.admin.commands import Budget, BudgetUnit, Period


@dataclass(frozen=True)
class ChannelSettings:
    """A channel's own settings (None: the default applies)."""

    team_id: str
    channel_id: str
    instructions: str | None = None
    model: str | None = None
    enabled: bool = True
    budget: Budget | None = None
    mcp_servers: tuple[str, ...] | None = None
    """The tool servers (labels) used here; None: every configured one, () none."""

    def value_of(self, name: str) -> str | None:
        value: object = {
            "instructions": self.instructions,
            "model": self.model,
            "enabled": "on" if self.enabled else "off",
            "budget": self.budget.describe() if self.budget else None,
            "mcp_servers": (
                None if self.mcp_servers is None else ", ".join(self.mcp_servers) or "none"
            ),
        }[name]
        return None if value is None else str(value)

    @property
    def is_default(self) -> bool:
        return (
            self.instructions is None
            and self.model is None
            and self.enabled
            and self.budget is None
            and self.mcp_servers is None
        )


def settings_of(row: Any) -> ChannelSettings:
    budget = None
    if row["budget_amount"] is not None and row["budget_unit"] and row["budget_period"]:
        budget = Budget(
            float(row["budget_amount"]),
            BudgetUnit(row["budget_unit"]),
            Period(row["budget_period"]),
        )
    return ChannelSettings(
        team_id=row["team_id"],
        channel_id=row["channel_id"],
        instructions=row["instructions"],
        model=row["model"],
        enabled=bool(row["enabled"]),
        budget=budget,
        mcp_servers=labels_of(row["mcp_servers"]),
    )


def labels_of(stored: str | None) -> tuple[str, ...] | None:
    """A stored JSON list of server labels (None: the default, every configured server)."""
    if stored is None:
        return None
    try:
        labels = json.loads(stored)
    except ValueError:
        return None
    if not isinstance(labels, list):
        return None
    return tuple(str(label) for label in labels)
