"""The operator's bounds as tables (bot/admin/policy.py): which models a channel may choose,
which budgets it may set, which tool servers a turn is offered; and the servers file's
`teams`."""

from __future__ import annotations

import re

import pytest

from bot.admin.commands import Action, Budget, BudgetUnit, Period, parse_command
from bot.admin.policy import (
    AllowedModels,
    Asker,
    Ceiling,
    ToolsDefault,
    budget_refusal,
    model_refusal,
    offered_servers,
)
from bot.admin.prices import DEFAULT_PRICES
from bot.settings import SettingsError, load_settings
from bot.store.admin_models import ChannelSetting, TurnUsage
from bot.store.chat_models import ChatMessage
from bot.tools.config import McpServer, ToolsConfigError, parse_servers

USD, TOKENS = BudgetUnit.USD, BudgetUnit.TOKENS
DAY, MONTH = Period.DAY, Period.MONTH
BASE = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "OPENAI_API_KEY": "k"}

# Models ---------------------------------------------------------------------------------

PRICED = AllowedModels.of((), priced=DEFAULT_PRICES, default="house-model")


@pytest.mark.parametrize(
    ("allowed", "model", "refused"),
    [
        (PRICED, "gpt-5-nano", None),
        (PRICED, "GPT-5-Nano", None),
        (PRICED, "house-model", None),  # OPENAI_MODEL is always allowed by default
        (PRICED, "gpt-9-ultra", "is not one of the models"),
        (PRICED, "g" * 129, "at most 128 characters"),
        (AllowedModels.of(("a", "b"), priced=DEFAULT_PRICES, default="m"), "gpt-4o", "`a`, `b`"),
        (AllowedModels.of(("a", "b"), priced=DEFAULT_PRICES, default="m"), "m", "not one of"),
        (AllowedModels.of(("*",), priced=(), default="m"), "anything-at-all", None),
        (AllowedModels.of(("*",), priced=(), default="m"), "g" * 300, "at most 128"),
    ],
)
def test_which_models_a_channel_may_choose(
    allowed: AllowedModels, model: str, refused: str | None
) -> None:
    refusal = model_refusal(model, allowed)
    assert refusal is None if refused is None else refused in (refusal or "")


def test_the_model_limit_fits_every_column_that_keeps_a_model_name() -> None:
    for column in (ChannelSetting.model, TurnUsage.model, ChatMessage.model):
        assert column.type.length >= 128  # type: ignore[attr-defined]


def test_allowed_models_is_read_and_checked_at_start() -> None:
    settings = load_settings({**BASE, "ALLOWED_MODELS": "gpt-4o, house"}, dotenv_path=None)
    assert settings.allowed_models == ("gpt-4o", "house")
    with pytest.raises(SettingsError, match="ALLOWED_MODELS") as caught:
        load_settings({**BASE, "ALLOWED_MODELS": "x" * 200}, dotenv_path=None)
    assert "\n" not in str(caught.value)


# Budgets --------------------------------------------------------------------------------

CAP = Ceiling(Budget(50, USD, MONTH), "CHANNEL_MONTHLY_COST_LIMIT_USD")


@pytest.mark.parametrize(
    ("budget", "ceilings", "refused"),
    [
        (Budget(20, USD, MONTH), [CAP], False),
        (Budget(50, USD, MONTH), [CAP], False),
        (Budget(51, USD, MONTH), [CAP], True),
        (Budget(60, USD, DAY), [CAP], True),  # a day can't spend more than the month allows
        (Budget(5, USD, DAY), [CAP], False),  # the month's ceiling still applies beside it
        (Budget(10**9, TOKENS, MONTH), [CAP], False),  # another unit: both apply
        (Budget(10**6, USD, MONTH), [], False),  # no ceiling set
    ],
)
def test_a_channel_budget_may_lower_the_operators_ceiling_never_raise_it(
    budget: Budget, ceilings: list[Ceiling], refused: bool
) -> None:
    refusal = budget_refusal(budget, ceilings)
    assert (refusal is not None) is refused
    if refusal:
        assert "$50.00 per month" in refusal and "CHANNEL_MONTHLY_COST_LIMIT_USD" in refusal


@pytest.mark.parametrize("amount", ["inf", "1e400", "nan"])
def test_a_budget_must_be_a_finite_amount(amount: str) -> None:
    assert parse_command(f"budget {amount} usd per month").action is Action.HELP


# Tool servers ---------------------------------------------------------------------------

OPEN = McpServer("open", "https://o/mcp")
OURS = McpServer("ours", "https://u/mcp", teams=("T1",))
SHARED = McpServer("shared", "https://s/mcp", teams=("T1", "TPARTNER"))
GRID = McpServer("grid", "https://g/mcp", teams=("E1",))
SERVERS = (OPEN, OURS, SHARED, GRID)
ALL, NONE = ToolsDefault.ALL, ToolsDefault.NONE
HOME = Asker("T1", None, frozenset({"T1"}))


@pytest.mark.parametrize(
    ("choice", "default", "asker", "expected"),
    [
        (None, ALL, HOME, ("open", "ours", "shared")),
        (None, NONE, HOME, ()),  # OAuth: off until an admin turns them on
        (("open", "ours"), NONE, HOME, ("open", "ours")),
        ((), ALL, HOME, ()),
        (None, ALL, Asker("T2", None, frozenset({"T2"})), ("open",)),  # another workspace
        (("ours",), ALL, Asker("T2"), ()),  # a choice can't reach a server not for it
        (None, ALL, Asker("T3", "E1", frozenset({"T3"})), ("open", "grid")),  # by organisation
        # Slack Connect: a user of another organisation gets only servers naming their team.
        (None, ALL, Asker("T1", None, frozenset({"T1", "TPARTNER"})), ("shared",)),
        (None, ALL, Asker("T1", None, frozenset({"TSTRANGER"})), ()),
        (("open",), ALL, Asker("T1", None, frozenset({"TPARTNER"})), ()),
    ],
)
def test_the_servers_a_turn_is_offered(
    choice: tuple[str, ...] | None, default: ToolsDefault, asker: Asker, expected: tuple[str, ...]
) -> None:
    assert offered_servers(SERVERS, choice=choice, default=default, asker=asker) == expected


def test_the_servers_file_names_teams() -> None:
    text = '{"servers": [{"label": "a", "url": "https://x/mcp", "teams": ["T0123", "E0456"]}]}'
    (server,) = parse_servers(text, toml=False, env={})
    assert server.teams == ("T0123", "E0456")
    assert (
        parse_servers(text.replace(', "teams": ["T0123", "E0456"]', ""), toml=False, env={})[
            0
        ].teams
        is None
    )


@pytest.mark.parametrize(
    ("teams", "message"),
    [
        ('"T0123"', "'teams' must be a non-empty list"),
        ("[]", "'teams' must be a non-empty list"),
        ('["acme"]', "'teams' has 'acme', not a team id"),
        ("[1]", "'teams' must be a non-empty list"),
    ],
)
def test_a_bad_teams_entry_is_refused_with_one_line(teams: str, message: str) -> None:
    text = f'{{"servers": [{{"label": "a", "url": "https://x/mcp", "teams": {teams}}}]}}'
    with pytest.raises(ToolsConfigError, match=re.escape(message)) as caught:
        parse_servers(text, toml=False, env={})
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "all_is_default", "action", "servers"),
    [
        ("tools all", True, Action.RESET_TOOLS, None),
        ("tools reset", True, Action.RESET_TOOLS, None),
        ("tools all", False, Action.SET_TOOLS, ("orders", "wiki")),
        ("tools reset", False, Action.RESET_TOOLS, None),
    ],
)
def test_tools_all_where_the_default_is_none(
    text: str, all_is_default: bool, action: Action, servers: tuple[str, ...] | None
) -> None:
    command = parse_command(text, servers=("orders", "wiki"), all_is_default=all_is_default)
    assert (command.action, command.servers) == (action, servers)
