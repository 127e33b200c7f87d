"""What the Slack listeners and the turn engine ask of the admin part.

- the turn engine: `channel_settings`, then `turn_options` (a channel's model, instructions
  and tool servers, within the operator's bounds: bot/admin/bounds.py) and `refusal_for`
  (a budget reached: the reply instead of a run),
  `record_usage` (after a run);
- the listeners: `is_enabled` (the off switch), `run_command` (`/assistant`), `is_admin`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.admin.bounds import OperatorBounds, labels
from bot.admin.budgets import Refusal, Scope, decide, period_start
from bot.admin.channel_settings import ChannelSettings
from bot.admin.commands import Action, Command, Period, help_text
from bot.admin.policy import Asker
from bot.admin.prices import PriceTable, format_cost, load_price_table
from bot.admin.report import total
from bot.admin.store import AdminStore, channel_settings_of, channel_settings_query
from bot.assistants.base import TurnOptions, Usage
from bot.escape import escape_mrkdwn
from bot.settings import Settings
from bot.slack.errors import error_code
from bot.store.ack_reads import AckReads

log = logging.getLogger(__name__)

ADMIN_CACHE_S = 60.0
NOT_ALLOWED_TEXT = (
    "Sorry, only workspace admins and owners (and the bot's configured admins) can change "
    "this channel's assistant settings. `/assistant show` and `/assistant usage` are open "
    "to everyone."
)


def off_note(admins: str) -> str:
    return (
        "I'm switched off in this channel, so I won't answer here. "
        f"{admins} can turn me back on with `/assistant on`."
    )


@dataclass(frozen=True)
class CommandContext:
    team_id: str
    channel_id: str
    user_id: str
    enterprise_id: str | None = None

    @property
    def asker(self) -> Asker:
        return Asker(self.team_id, self.enterprise_id)


class AdminService:
    def __init__(
        self,
        engine: AsyncEngine,
        settings: Settings,
        prices: PriceTable | None = None,
        *,
        intake_engine: AsyncEngine | None = None,
    ) -> None:
        """`intake_engine`, if given, is what the off switch reads inside Slack's ack (so
        the ack never waits for a connection answer work holds)."""
        self.store = AdminStore(engine)
        self._switch = AckReads(intake_engine or engine)
        self._settings = settings
        self.prices = prices or load_price_table(settings.prices_file)
        # (team, user) → (until, admin): on Enterprise Grid one person is an admin of one
        # workspace and not of another.
        self._admins: dict[tuple[str, str], tuple[float, bool]] = {}
        self.bounds = OperatorBounds(settings, self.prices)

    # The turn engine --------------------------------------------------------------------

    async def channel_settings(self, team_id: str, channel_id: str) -> ChannelSettings:
        """The channel's settings, read fresh for every turn (once: `turn_options` and
        `refusal_for` both take them)."""
        return await self.store.channel_settings(team_id, channel_id)

    async def refusal_for(
        self,
        channel: ChannelSettings,
        *,
        team_id: str,
        channel_id: str,
        user_id: str,
        now: float | None = None,
    ) -> Refusal | None:
        """A limit this message would go over, from the usage all processes recorded."""
        limits = self.bounds.limits(channel)
        if not limits:
            return None
        moment = datetime.fromtimestamp(time.time() if now is None else now, UTC)
        measured = []
        for limit in limits:
            since = period_start(limit.budget.period, moment).timestamp()
            spent = await self.store.spent(
                team_id,
                since=since,
                channel_id=channel_id if limit.scope == Scope.CHANNEL else None,
                user_id=user_id if limit.scope == Scope.USER else None,
            )
            measured.append((limit, spent))
        return decide(measured, now=moment)

    def turn_options(self, channel: ChannelSettings, asker: Asker) -> TurnOptions:
        """What a channel's settings change in a turn asked by `asker`, within the
        operator's bounds (the one place a turn's model and tool servers are chosen)."""
        return self.bounds.turn_options(channel, asker)

    async def record_usage(
        self, *, turn_id: int, conversation_id: int, usage: Usage
    ) -> float | None:
        """Add what a turn's model request(s) used to the turn's usage; its estimated cost."""
        cost = self.prices.cost(usage)
        await self.store.record_usage(
            turn_id=turn_id, conversation_id=conversation_id, usage=usage, cost_usd=cost
        )
        return cost

    # The listeners ----------------------------------------------------------------------

    async def is_enabled(self, team_id: str, channel_id: str) -> bool:
        row = await self._switch.first(channel_settings_query(team_id, channel_id))
        return channel_settings_of(row, team_id, channel_id).enabled

    async def is_admin(self, client: AsyncWebClient, user_id: str, *, team_id: str) -> bool:
        """Admins and owners of the workspace `team_id` (users.info with its token,
        remembered a minute), and ADMIN_USER_IDS."""
        if user_id in self._settings.admin_user_ids:
            return True
        cached = self._admins.get((team_id, user_id))
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        try:
            response = await client.users_info(user=user_id)
        except SlackApiError as exc:
            log.warning("users.info for %s failed: %s", user_id, error_code(exc))
            return False
        user = response.get("user") or {}
        admin = any(bool(user.get(flag)) for flag in ("is_admin", "is_owner", "is_primary_owner"))
        self._admins[(team_id, user_id)] = (time.monotonic() + ADMIN_CACHE_S, admin)
        return admin

    def parse(self, text: str, context: CommandContext) -> Command:
        """`/assistant` text, with the tool servers this workspace may choose from."""
        return self.bounds.parse(text, context.team_id, context.enterprise_id)

    def who_can_turn_on(self) -> str:
        named = sorted(self._settings.admin_user_ids)
        if named:
            return "Workspace admins, or " + ", ".join(f"<@{u}>" for u in named) + ","
        return "Workspace admins and owners"

    async def run_command(
        self, command: Command, context: CommandContext, *, is_admin: bool
    ) -> str:
        """Carry out an `/assistant` command; the ephemeral reply."""
        if command.action is Action.HELP:
            return help_text(command)
        if command.action is Action.SHOW:
            return await self._show(context)
        if command.action is Action.USAGE:
            return await self._usage(context)
        if command.action is Action.TOOLS:
            return await self._tools(context)
        if not is_admin:
            log.info(
                "settings: %s may not change %s in %s",
                context.user_id,
                command.action.value,
                context.channel_id,
            )
            return NOT_ALLOWED_TEXT
        refusal = self.bounds.refusal(command)
        if refusal is not None:
            log.info("settings: %s asked for more than the operator allows", context.user_id)
            return refusal
        values = _setting_values(command)
        changes = await self.store.change_settings(
            context.team_id, context.channel_id, user_id=context.user_id, **values
        )
        for change in changes:
            log.info(
                "settings: %s changed %s in %s/%s",
                context.user_id,
                change.field,
                context.team_id,
                context.channel_id,
            )
        return self.bounds.confirmation(command, _confirmation(command, changed=bool(changes)))

    async def _show(self, context: CommandContext) -> str:
        own = await self.store.channel_settings(context.team_id, context.channel_id)
        settings = self._settings
        default_model = (
            settings.openai_model
            if settings.assistant_api == "responses"
            else (f"the assistant's own ({settings.openai_assistant_id})")
        )
        lines = [f"*Assistant settings in <#{context.channel_id}>*"]
        lines.append(f"• Answers here: {'on' if own.enabled else '*off*'}")
        lines.append(_line("Model", own.model, default_model))
        if own.model and not self.bounds.allowed_models.allows(own.model):
            lines.append(f"  (not allowed by the operator any more: {default_model} is used)")
        workspace = settings.assistant_instructions
        if own.instructions:
            lines.append(f"• Instructions (this channel): {_quote(own.instructions)}")
            if workspace:
                lines.append("  (the workspace-wide instructions still come first)")
        else:
            lines.append(
                "• Instructions (default): "
                + (_quote(workspace) if workspace else "none beyond the assistant's own")
            )
        lines.append(self.bounds.tools_line(own, context.asker))
        limits = self.bounds.limits(own)
        if limits:
            for limit in limits:
                lines.append(f"• Limit ({limit.source}): {limit.budget.describe()}")
        else:
            lines.append("• Limits: none")
        return "\n".join(lines)

    async def _tools(self, context: CommandContext) -> str:
        """The MCP servers this workspace may use, each marked on or off in this channel."""
        own = await self.store.channel_settings(context.team_id, context.channel_id)
        return self.bounds.tools_text(own, context.asker)

    async def _usage(self, context: CommandContext) -> str:
        since = period_start(Period.MONTH, datetime.now(UTC)).timestamp()
        rows = await self.store.usage_rows(
            since=since, team_id=context.team_id, channel_id=context.channel_id
        )
        channel = total(rows)
        mine = total(row for row in rows if row.user_id == context.user_id)
        return (
            f"*Usage in <#{context.channel_id}> this month*\n"
            f"• This channel: {channel.counts_text}, about {channel.cost_text}\n"
            f"• Yours here: {mine.counts_text}, about {mine.cost_text}"
        )


def _setting_values(command: Command) -> dict[str, object]:
    values: dict[Action, dict[str, object]] = {
        Action.SET_INSTRUCTIONS: {"instructions": command.text},
        Action.RESET_INSTRUCTIONS: {"instructions": None},
        Action.SET_MODEL: {"model": command.text},
        Action.RESET_MODEL: {"model": None},
        Action.OFF: {"enabled": False},
        Action.ON: {"enabled": True},
        Action.SET_BUDGET: {"budget": command.budget},
        Action.RESET_BUDGET: {"budget": None},
        Action.SET_TOOLS: {"mcp_servers": command.servers},
        Action.RESET_TOOLS: {"mcp_servers": None},
    }
    return values[command.action]


def _confirmation(command: Command, *, changed: bool) -> str:
    unchanged = " (it already was)" if not changed else ""
    texts = {
        Action.SET_INSTRUCTIONS: (
            "This channel has its own instructions now, from the next answer on."
        ),
        Action.RESET_INSTRUCTIONS: "This channel uses the default instructions again.",
        Action.SET_MODEL: f"This channel uses the model `{command.text}` from the next answer on.",
        Action.RESET_MODEL: "This channel uses the default model again.",
        Action.OFF: "I'm off in this channel: I won't answer mentions here until `/assistant on`.",
        Action.ON: "I'm on in this channel again.",
        Action.SET_BUDGET: (
            f"This channel's budget is {command.budget.describe()}." if command.budget else ""
        ),
        Action.RESET_BUDGET: "This channel has no budget of its own any more.",
        Action.SET_TOOLS: (
            f"I may use only these tool servers here from the next answer on: "
            f"{labels(command.servers)}."
            if command.servers
            else "I use no tool servers in this channel from the next answer on."
        ),
        Action.RESET_TOOLS: "I may use every configured tool server here again (the default).",
    }
    return texts[command.action] + unchanged


def _line(name: str, own: str | None, default: str) -> str:
    if own:
        return f"• {name} (this channel): `{escape_mrkdwn(own)}`"
    return f"• {name} (default): {default}"


def _quote(text: str, limit: int = 300) -> str:
    short = text if len(text) <= limit else text[: limit - 1] + "…"
    return "\n>" + escape_mrkdwn(short).replace("\n", "\n>")


__all__ = ["AdminService", "CommandContext", "Refusal", "format_cost", "off_note"]
