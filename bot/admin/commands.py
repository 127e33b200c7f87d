"""`/assistant …`: the command text parsed into a `Command` (pure)."""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

MAX_INSTRUCTIONS_CHARS = 4000
MAX_MODEL_CHARS = 128
"""The longest model name the database keeps (`channel_settings.model`, `turn_usage.model`)."""


class Action(enum.Enum):
    HELP = "help"
    SHOW = "show"
    SET_INSTRUCTIONS = "instructions"
    RESET_INSTRUCTIONS = "instructions reset"
    SET_MODEL = "model"
    RESET_MODEL = "model reset"
    OFF = "off"
    ON = "on"
    USAGE = "usage"
    SET_BUDGET = "budget"
    RESET_BUDGET = "budget reset"
    TOOLS = "tools"
    """List the configured tool servers and which are on here (open to all)."""
    SET_TOOLS = "tools set"
    RESET_TOOLS = "tools all"

    @property
    def changes_settings(self) -> bool:
        return self not in (Action.HELP, Action.SHOW, Action.USAGE, Action.TOOLS)


class BudgetUnit(enum.StrEnum):
    USD = "usd"
    TOKENS = "tokens"


class Period(enum.StrEnum):
    DAY = "day"
    MONTH = "month"


@dataclass(frozen=True)
class Budget:
    amount: float
    unit: BudgetUnit
    period: Period

    def describe(self) -> str:
        if self.unit is BudgetUnit.USD:
            return f"${self.amount:,.2f} per {self.period.value}"
        return f"{int(self.amount):,} tokens per {self.period.value}"


@dataclass(frozen=True)
class Command:
    action: Action
    text: str | None = None
    budget: Budget | None = None
    servers: tuple[str, ...] | None = None
    """SET_TOOLS: the tool servers (their labels) this channel may use; () for none."""
    problem: str | None = None
    """Why the text was not understood (shown above the help), None when it was."""


def parse_command(raw: str, *, servers: Sequence[str] = (), all_is_default: bool = True) -> Command:
    """`/assistant` text → Command; anything not understood is HELP with the problem named.

    `servers` are the labels of the MCP servers this workspace may use, which `tools`
    chooses from. Where the default is no servers (OAuth mode), `tools all` chooses each of
    them and `tools reset` goes back to the default.
    """
    text = raw.strip()
    word, _, rest = text.partition(" ")
    word, rest = word.lower(), rest.strip()
    if word in ("", "help"):
        return Command(Action.HELP)
    if word in ("show", "usage", "off", "on") and not rest:
        return Command(Action(word))
    if word == "instructions":
        if not rest:
            return _help("`/assistant instructions` needs the instructions text (or `reset`).")
        if rest.lower() == "reset":
            return Command(Action.RESET_INSTRUCTIONS)
        if len(rest) > MAX_INSTRUCTIONS_CHARS:
            return _help(f"Instructions may be at most {MAX_INSTRUCTIONS_CHARS:,} characters.")
        return Command(Action.SET_INSTRUCTIONS, text=rest)
    if word == "model":
        if not rest or " " in rest:
            return _help("`/assistant model` needs one model name (or `reset`).")
        if rest.lower() == "reset":
            return Command(Action.RESET_MODEL)
        return Command(Action.SET_MODEL, text=rest)
    if word == "budget":
        return _budget(rest)
    if word == "tools":
        return _tools(rest, servers, all_is_default=all_is_default)
    return _help(f"I don't know `/assistant {word}`.")


def _budget(rest: str) -> Command:
    if rest.lower() == "reset":
        return Command(Action.RESET_BUDGET)
    usage = (
        "Use `/assistant budget <amount> usd|tokens per day|month`, "
        "e.g. `/assistant budget 20 usd per month`."
    )
    parts = rest.lower().replace("$", "").split()
    if len(parts) == 3:  # "20 usd month"
        parts.insert(2, "per")
    if len(parts) != 4 or parts[2] != "per":
        return _help(usage)
    amount_text, unit_text, _, period_text = parts
    try:
        amount = float(amount_text.replace(",", ""))
    except ValueError:
        return _help(usage)
    unit = {"usd": BudgetUnit.USD, "tokens": BudgetUnit.TOKENS, "token": BudgetUnit.TOKENS}.get(
        unit_text
    )
    period = {"day": Period.DAY, "month": Period.MONTH}.get(period_text)
    if unit is None or period is None or not amount > 0 or not math.isfinite(amount):
        return _help(usage)
    if unit is BudgetUnit.TOKENS:
        amount = float(int(amount))
    return Command(Action.SET_BUDGET, budget=Budget(amount, unit, period))


def _tools(rest: str, configured: Sequence[str], *, all_is_default: bool) -> Command:
    """`tools` (list), `tools all`/`reset` (the default), `tools none`, `tools a b` or `a, b`.

    Labels match the configured ones ignoring case, and are kept in the configured order.
    """
    words = rest.replace(",", " ").split()
    lowered = [word.lower() for word in words]
    if not words:
        return Command(Action.TOOLS)
    if lowered == ["all"] and not all_is_default:
        return Command(Action.SET_TOOLS, servers=tuple(configured))
    if lowered in (["all"], ["reset"]):
        return Command(Action.RESET_TOOLS)
    if lowered == ["none"]:
        return Command(Action.SET_TOOLS, servers=())
    if {"all", "none", "reset"} & set(lowered):
        return _help("Use `/assistant tools all`, `/assistant tools none`, or server labels.")
    by_name = {label.lower(): label for label in configured}
    unknown = [word for word in words if word.lower() not in by_name]
    if unknown:
        known = ", ".join(f"`{label}`" for label in configured)
        return _help(
            f"There is no tool server `{unknown[0]}`. "
            + (f"The configured ones are {known}." if known else "None are configured.")
        )
    chosen = {by_name[word] for word in lowered}
    return Command(
        Action.SET_TOOLS, servers=tuple(label for label in configured if label in chosen)
    )


def _help(problem: str) -> Command:
    return Command(Action.HELP, problem=problem)


HELP_TEXT = """*`/assistant`: this channel's assistant*
• `/assistant show`: the settings in effect here, and where each comes from
• `/assistant usage`: this channel's usage this month, and yours
• `/assistant instructions <text>` / `/assistant instructions reset`: this channel's own \
instructions
• `/assistant model <name>` / `/assistant model reset`: this channel's model
• `/assistant off` / `/assistant on`: whether I answer in this channel at all
• `/assistant budget <amount> usd|tokens per day|month` / `/assistant budget reset`: a limit here
• `/assistant tools`: the tool (MCP) servers, and which I may use here; \
`/assistant tools <label> [<label>…]` / `/assistant tools none` / `/assistant tools all`: choose
Changing settings is for workspace admins and owners (and the bot's configured admins)."""


def help_text(command: Command) -> str:
    return f"{command.problem}\n\n{HELP_TEXT}" if command.problem else HELP_TEXT
