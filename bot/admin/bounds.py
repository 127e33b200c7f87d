"""The operator's bounds applied to one deployment: its settings read through the pure rules
of `bot/admin/policy.py`, for the turn engine (`turn_options`, `limits`) and `/assistant`
(`parse`, `refusal`, the tool servers shown)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from bot.admin.budgets import Limit, Scope
from bot.admin.channel_settings import ChannelSettings
from bot.admin.commands import Action, Budget, BudgetUnit, Command, Period, parse_command
from bot.admin.policy import (
    AllowedModels,
    Asker,
    Ceiling,
    ToolsDefault,
    available_servers,
    budget_refusal,
    ceilings_note,
    model_refusal,
    offered_servers,
)
from bot.admin.prices import PriceTable
from bot.assistants.base import NO_OPTIONS, TurnOptions
from bot.settings import Settings

log = logging.getLogger(__name__)

NO_TOOLS_DEFAULT_TEXT = (
    "This channel is back to the default: no tool servers until an admin turns them on "
    "(`/assistant tools <label>` or `/assistant tools all`)."
)


class OperatorBounds:
    def __init__(self, settings: Settings, prices: PriceTable) -> None:
        self._settings = settings
        self.allowed_models = AllowedModels.of(
            settings.allowed_models, priced=prices.models, default=settings.openai_model
        )
        self.tools_default = ToolsDefault.NONE if settings.oauth else ToolsDefault.ALL
        """OAuth mode: the servers carry the operator's credentials into workspaces the
        operator does not run, so none is used until a workspace's admin turns it on."""

    # Spending ---------------------------------------------------------------------------

    def limits(self, channel: ChannelSettings) -> list[Limit]:
        """The operator's limits, always, and a channel's own budget beside them (it can
        only stop answers earlier, never let more through)."""
        limits = []
        if self._settings.user_daily_token_limit:
            budget = Budget(
                float(self._settings.user_daily_token_limit), BudgetUnit.TOKENS, Period.DAY
            )
            limits.append(Limit(Scope.USER, budget, "the daily limit per person"))
        for ceiling in self.ceilings():
            limits.append(Limit(Scope.CHANNEL, ceiling.budget, "the monthly limit per channel"))
        if channel.budget is not None:
            limits.append(Limit(Scope.CHANNEL, channel.budget, "this channel's budget"))
        return limits

    def ceilings(self) -> list[Ceiling]:
        """The operator's limits on a channel's spending (a channel's budget stays below)."""
        cap = self._settings.channel_monthly_cost_limit_usd
        if not cap:
            return []
        return [
            Ceiling(Budget(cap, BudgetUnit.USD, Period.MONTH), "CHANNEL_MONTHLY_COST_LIMIT_USD")
        ]

    # `/assistant` -----------------------------------------------------------------------

    def parse(self, text: str, team_id: str, enterprise_id: str | None = None) -> Command:
        """`/assistant` text, choosing among the tool servers this workspace may use."""
        return parse_command(
            text,
            servers=self.tool_servers(team_id, enterprise_id),
            all_is_default=self.tools_default is ToolsDefault.ALL,
        )

    def refusal(self, command: Command) -> str | None:
        """Why a change is refused: a model or a budget beyond what the operator allows."""
        if command.action is Action.SET_MODEL and command.text is not None:
            return model_refusal(command.text, self.allowed_models)
        if command.action is Action.SET_BUDGET and command.budget is not None:
            return budget_refusal(command.budget, self.ceilings())
        return None

    def confirmation(self, command: Command, usual: str) -> str:
        """The reply to a change made: `usual`, with what the operator's bounds add to it."""
        if command.action is Action.RESET_TOOLS and self.tools_default is ToolsDefault.NONE:
            return NO_TOOLS_DEFAULT_TEXT
        if command.budget is not None:
            return usual + ceilings_note(command.budget, self.ceilings())
        return usual

    # Tool servers -----------------------------------------------------------------------

    def tool_servers(self, team_id: str, enterprise_id: str | None = None) -> tuple[str, ...]:
        """The labels of the MCP servers a workspace may use, in the file's order."""
        asker = Asker(team_id, enterprise_id)
        return tuple(available_servers(self._settings.mcp_servers, asker))

    def servers_used(self, channel: ChannelSettings, asker: Asker) -> tuple[str, ...]:
        return offered_servers(
            self._settings.mcp_servers,
            choice=channel.mcp_servers,
            default=self.tools_default,
            asker=asker,
        )

    def tools_line(self, own: ChannelSettings, asker: Asker) -> str:
        """`/assistant show`'s line on the tool servers."""
        configured = self.tool_servers(asker.team_id, asker.enterprise_id)
        if not configured:
            return "• Tool servers: none configured"
        if own.mcp_servers is None and self.tools_default is ToolsDefault.NONE:
            return "• Tool servers (default): none until an admin turns them on"
        if own.mcp_servers is None:
            return "• Tool servers (default): all, " + labels(configured)
        return "• Tool servers (this channel): " + (labels(own.mcp_servers) or "none")

    def tools_text(self, own: ChannelSettings, asker: Asker) -> str:
        """`/assistant tools`: the servers this workspace may use, each on or off here."""
        configured = self.tool_servers(asker.team_id, asker.enterprise_id)
        if not configured:
            return (
                "No tool (MCP) servers are configured for this workspace "
                "(`MCP_SERVERS_FILE`), so there is nothing to choose here."
            )
        used = self.servers_used(own, asker)
        source = (
            f"the default: {self.tools_default.value}"
            if own.mcp_servers is None
            else "this channel's choice"
        )
        lines = [f"*Tool servers in <#{own.channel_id}>* ({source})"]
        lines += [f"• `{label}`: {'on' if label in used else 'off'}" for label in configured]
        stale = [label for label in own.mcp_servers or () if label not in configured]
        if stale:
            lines.append(f"(chosen but no longer configured: {labels(stale)})")
        lines.append(
            "Choose with `/assistant tools <label> [<label>…]`, `/assistant tools none` "
            "or `/assistant tools all`."
        )
        return "\n".join(lines)

    # The turn ---------------------------------------------------------------------------

    def turn_options(self, channel: ChannelSettings, asker: Asker) -> TurnOptions:
        """What a channel's settings change in a turn, within the operator's bounds: an
        allowed model, its instructions, and the tool servers this turn may be offered."""
        model = channel.model
        if model is not None and not self.allowed_models.allows(model):
            log.info("settings: the channel's model %s is not allowed; the default is used", model)
            model = None
        servers = self._settings.mcp_servers
        offered = self.servers_used(channel, asker)
        if asker.external_teams and servers:
            log.info(
                "tools: asked from another organisation (%s): only servers naming it: %s",
                ",".join(sorted(asker.external_teams)),
                ",".join(offered) or "none",
            )
        everything = len(offered) == len(servers)
        if model is None and channel.instructions is None and everything:
            return NO_OPTIONS
        return TurnOptions(
            model=model,
            instructions=channel.instructions,
            mcp_servers=None if everything else offered,
        )


def labels(names: Sequence[str] | None) -> str:
    return ", ".join(f"`{name}`" for name in names or ())
