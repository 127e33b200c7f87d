"""The admin part's pure decisions, as tables: the `/assistant` parser, prices, budgets,
usage reports."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.admin.bounds import OperatorBounds
from bot.admin.budgets import Limit, Scope, Spent, decide
from bot.admin.channel_settings import ChannelSettings
from bot.admin.commands import Action, Budget, BudgetUnit, Period, parse_command
from bot.admin.policy import Asker
from bot.admin.prices import PricesError, format_cost, load_price_table
from bot.admin.report import Format, GroupBy, UsageRow, aggregate, counted, render
from bot.assistants.base import NO_OPTIONS, TurnOptions, Usage, chosen
from bot.settings import Settings
from bot.tools.config import McpServer

USD, TOKENS = BudgetUnit.USD, BudgetUnit.TOKENS
DAY, MONTH = Period.DAY, Period.MONTH


@pytest.mark.parametrize(
    ("text", "action", "value", "budget"),
    [
        ("", Action.HELP, None, None),
        ("help", Action.HELP, None, None),
        ("  SHOW ", Action.SHOW, None, None),
        ("usage", Action.USAGE, None, None),
        ("off", Action.OFF, None, None),
        ("on", Action.ON, None, None),
        ("instructions Answer in French.", Action.SET_INSTRUCTIONS, "Answer in French.", None),
        ("instructions reset", Action.RESET_INSTRUCTIONS, None, None),
        ("instructions", Action.HELP, None, None),
        ("model gpt-5-mini", Action.SET_MODEL, "gpt-5-mini", None),
        ("model Reset", Action.RESET_MODEL, None, None),
        ("model two words", Action.HELP, None, None),
        ("budget 20 usd per month", Action.SET_BUDGET, None, Budget(20, USD, MONTH)),
        ("budget $2.50 USD per day", Action.SET_BUDGET, None, Budget(2.5, USD, DAY)),
        ("budget 100,000 tokens per day", Action.SET_BUDGET, None, Budget(100000, TOKENS, DAY)),
        ("budget 5000 tokens month", Action.SET_BUDGET, None, Budget(5000, TOKENS, MONTH)),
        ("budget reset", Action.RESET_BUDGET, None, None),
        ("budget -1 usd per day", Action.HELP, None, None),
        ("budget 5 euros per day", Action.HELP, None, None),
        ("budget 5 usd per year", Action.HELP, None, None),
        ("off please", Action.HELP, None, None),
        ("frobnicate", Action.HELP, None, None),
    ],
)
def test_command_parser(
    text: str, action: Action, value: str | None, budget: Budget | None
) -> None:
    command = parse_command(text)
    assert (command.action, command.text, command.budget) == (action, value, budget)
    if text.strip() not in ("", "help"):
        assert (command.problem is not None) == (action is Action.HELP)


CONFIGURED = ("orders", "wiki", "CRM")


@pytest.mark.parametrize(
    ("text", "action", "servers", "problem"),
    [
        ("tools", Action.TOOLS, None, None),
        ("tools all", Action.RESET_TOOLS, None, None),
        ("tools RESET", Action.RESET_TOOLS, None, None),
        ("tools none", Action.SET_TOOLS, (), None),
        ("tools orders", Action.SET_TOOLS, ("orders",), None),
        ("tools wiki orders", Action.SET_TOOLS, ("orders", "wiki"), None),
        ("tools wiki, crm,orders wiki", Action.SET_TOOLS, ("orders", "wiki", "CRM"), None),
        (
            "tools orders jira",
            Action.HELP,
            None,
            "There is no tool server `jira`. The configured ones are `orders`, `wiki`, `CRM`.",
        ),
        ("tools none orders", Action.HELP, None, "`/assistant tools none`"),
        ("tools all wiki", Action.HELP, None, "`/assistant tools all`"),
    ],
)
def test_tools_command_parser(
    text: str, action: Action, servers: tuple[str, ...] | None, problem: str | None
) -> None:
    command = parse_command(text, servers=CONFIGURED)
    assert (command.action, command.servers) == (action, servers)
    assert (problem is None) == (command.problem is None)
    if problem is not None:
        assert command.problem is not None and problem in command.problem
    assert command.action.changes_settings == (action in (Action.SET_TOOLS, Action.RESET_TOOLS))


def test_tools_command_without_configured_servers_says_so() -> None:
    command = parse_command("tools orders")
    assert command.action is Action.HELP
    assert command.problem == "There is no tool server `orders`. None are configured."


@pytest.mark.parametrize(
    ("configured", "choice", "expected"),
    [
        (["a", "b"], None, ["a", "b"]),
        (["a", "b"], (), []),
        (["a", "b"], ("b",), ["b"]),
        (["a", "b"], ("b", "gone"), ["b"]),
        ([], ("a",), []),
    ],
)
def test_the_servers_a_turn_may_use(
    configured: list[str], choice: tuple[str, ...] | None, expected: list[str]
) -> None:
    assert chosen(configured, choice) == expected


@pytest.mark.parametrize(
    ("channel", "expected"),
    [
        (ChannelSettings("T1", "C1"), NO_OPTIONS),
        (ChannelSettings("T1", "C1", enabled=False), NO_OPTIONS),
        (ChannelSettings("T1", "C1", model="gpt-x"), TurnOptions(model="gpt-x")),
        (
            ChannelSettings("T1", "C1", instructions="Be brief."),
            TurnOptions(instructions="Be brief."),
        ),
        (ChannelSettings("T1", "C1", mcp_servers=()), TurnOptions(mcp_servers=())),
        (ChannelSettings("T1", "C1", mcp_servers=("orders", "wiki")), NO_OPTIONS),
        (
            ChannelSettings("T1", "C1", model="m", instructions="i", mcp_servers=("wiki",)),
            TurnOptions(model="m", instructions="i", mcp_servers=("wiki",)),
        ),
    ],
)
def test_what_a_channels_settings_change_in_a_turn(
    channel: ChannelSettings, expected: TurnOptions
) -> None:
    settings = Settings(
        "xoxb-1",
        "s",
        "k",
        "responses",
        allowed_models=("gpt-x", "m"),
        mcp_servers=(McpServer("orders", "https://o/mcp"), McpServer("wiki", "https://w/mcp")),
    )
    bounds = OperatorBounds(settings, load_price_table(None))
    assert bounds.turn_options(channel, Asker("T1")) == expected


@pytest.mark.parametrize(
    ("model", "tokens", "expected"),
    [
        ("gpt-5-mini", (1_000_000, 0, 1_000_000), 0.25 + 2.00),
        ("gpt-5-mini-2025-08-07", (1_000_000, 0, 0), 0.25),
        ("GPT-4o-2024-08-06", (0, 0, 1_000_000), 10.00),
        ("gpt-5-mini", (1_000_000, 400_000, 0), 0.6 * 0.25 + 0.4 * 0.025),
        ("gpt-4o-mini", (2_000, 0, 1_000), (2_000 * 0.15 + 1_000 * 0.60) / 1e6),
        ("llama-3.1-70b", (1_000, 0, 1_000), None),
        ("gpt-test", (10, 0, 10), None),
    ],
)
def test_prices(model: str, tokens: tuple[int, int, int], expected: float | None) -> None:
    inputs, cached, outputs = tokens
    usage = Usage(model, input_tokens=inputs, cached_input_tokens=cached, output_tokens=outputs)
    cost = load_price_table(None).cost(usage)
    assert cost == (None if expected is None else pytest.approx(expected))


def test_prices_file_adds_and_overrides_models(tmp_path: Path) -> None:
    json_file = tmp_path / "prices.json"
    json_file.write_text(json.dumps({"llama-3.1-70b": {"input": 0.5, "output": 1.0}}))
    toml_file = tmp_path / "prices.toml"
    toml_file.write_text('["gpt-5-mini"]\ninput = 1.0\noutput = 1.0\ncached_input = 0.5\n')
    usage = Usage("llama-3.1-70b", input_tokens=1_000_000, output_tokens=1_000_000)
    assert load_price_table(str(json_file)).cost(usage) == pytest.approx(1.5)
    mini = Usage("gpt-5-mini", input_tokens=1_000_000, output_tokens=0)
    assert load_price_table(str(toml_file)).cost(mini) == pytest.approx(1.0)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"x": {"input": "free"}}))
    with pytest.raises(PricesError, match="'x' needs numbers"):
        load_price_table(str(bad))


@pytest.mark.parametrize(
    ("cost", "text"),
    [(None, "unknown price"), (0.000123, "$0.000123"), (0.5, "$0.5000"), (1234.5, "$1,234.50")],
)
def test_format_cost(cost: float | None, text: str) -> None:
    assert format_cost(cost) == text


NOW = datetime(2026, 3, 14, 15, 0, tzinfo=UTC)
USER_DAY = Limit(Scope.USER, Budget(1000, TOKENS, DAY), "the daily limit per person")
CHANNEL_MONTH = Limit(Scope.CHANNEL, Budget(20, USD, MONTH), "this channel's budget")


@pytest.mark.parametrize(
    ("limits", "refused_by", "resets"),
    [
        ([], None, None),
        ([(USER_DAY, Spent(999, 50.0))], None, None),
        ([(USER_DAY, Spent(1000, 0.0))], USER_DAY, "2026-03-15 00:00"),
        ([(CHANNEL_MONTH, Spent(10**9, 19.99))], None, None),
        ([(CHANNEL_MONTH, Spent(0, 20.0))], CHANNEL_MONTH, "2026-04-01 00:00"),
        (
            [(USER_DAY, Spent(5, 0.0)), (CHANNEL_MONTH, Spent(0, 25.0))],
            CHANNEL_MONTH,
            "2026-04-01 00:00",
        ),
    ],
)
def test_budget_decisions(
    limits: list[tuple[Limit, Spent]], refused_by: Limit | None, resets: str | None
) -> None:
    refusal = decide(limits, now=NOW)
    if refused_by is None:
        assert refusal is None
        return
    assert refusal is not None and refusal.limit == refused_by
    assert refusal.resets_at.strftime("%Y-%m-%d %H:%M") == resets
    assert refused_by.source in refusal.text() and f"{resets} UTC" in refusal.text()


def test_budget_month_end_in_december() -> None:
    refusal = decide(
        [(CHANNEL_MONTH, Spent(0, 30.0))], now=datetime(2026, 12, 31, 23, 59, tzinfo=UTC)
    )
    assert refusal is not None and refusal.resets_at == datetime(2027, 1, 1, tzinfo=UTC)


def row(
    user: str, channel: str, model: str, i: int, o: int, cost: float | None, day: int
) -> UsageRow:
    at = datetime(2026, 3, day, 12, tzinfo=UTC).timestamp()
    return UsageRow("T1", channel, user, model, i, 0, o, 0, cost, at)


ROWS = [
    row("UA", "C1", "gpt-5-mini", 100, 10, 0.002, 1),
    row("UB", "C1", "gpt-5-mini", 200, 20, 0.004, 2),
    row("UA", "C2", "local-llm", 300, 30, None, 2),
]


@pytest.mark.parametrize(
    ("by", "expected"),
    [
        (GroupBy.USER, [("UB", 1, 220, "$0.004000"), ("UA", 2, 440, "$0.002000 + unknown price")]),
        (GroupBy.CHANNEL, [("C1", 2, 330, "$0.006000"), ("C2", 1, 330, "unknown price")]),
        (
            GroupBy.DAY,
            [
                ("2026-03-01", 1, 110, "$0.002000"),
                ("2026-03-02", 2, 550, "$0.004000 + unknown price"),
            ],
        ),
        (
            GroupBy.MODEL,
            [("gpt-5-mini", 2, 330, "$0.006000"), ("local-llm", 1, 330, "unknown price")],
        ),
    ],
)
def test_usage_aggregation(by: GroupBy, expected: list[tuple[str, int, int, str]]) -> None:
    got = [(key, t.answers, t.tokens, t.cost_text) for key, t in aggregate(ROWS, by)]
    assert got == expected


def test_usage_renders_as_csv_json_and_a_table() -> None:
    groups = aggregate(ROWS, GroupBy.CHANNEL)
    rows = list(csv.DictReader(io.StringIO(render(groups, by=GroupBy.CHANNEL, fmt=Format.CSV))))
    assert rows[0] == {
        "channel": "C1",
        "name": "",
        "answers": "2",
        "input_tokens": "300",
        "cached_input_tokens": "0",
        "output_tokens": "30",
        "reasoning_tokens": "0",
        "cost_usd": "0.006000",
        "unpriced_answers": "0",
    }
    data = json.loads(render(groups, by=GroupBy.CHANNEL, fmt=Format.JSON))
    assert data[1]["channel"] == "C2" and data[1]["unpriced_answers"] == 1
    table = render(groups, by=GroupBy.CHANNEL, fmt=Format.TABLE).splitlines()
    assert table[0].split() == [
        "channel",
        "answers",
        "input",
        "cached",
        "output",
        "reasoning",
        "est.",
        "cost",
    ]
    assert table[-1].split()[:3] == ["TOTAL", "3", "600"]
    assert table[-1].endswith("$0.006000 + unknown price")


@pytest.mark.parametrize(
    ("count", "noun", "expected"),
    [
        (0, "answer", "0 answers"),
        (1, "answer", "1 answer"),
        (2, "answer", "2 answers"),
        (1, "token", "1 token"),
        (1234, "token", "1,234 tokens"),
    ],
)
def test_counts_are_pluralised(count: int, noun: str, expected: str) -> None:
    assert counted(count, noun) == expected


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (ROWS[:1], "1 answer, 110 tokens"),
        (ROWS, "3 answers, 660 tokens"),
        ([row("UA", "C1", "m", 1, 0, None, 1)], "1 answer, 1 token"),
    ],
)
def test_totals_say_answers_and_tokens_in_words(rows: list[UsageRow], expected: str) -> None:
    ((_, totals),) = aggregate(rows, GroupBy.TEAM)
    assert totals.counts_text == expected


@pytest.mark.parametrize(
    ("cost", "csv_cost"),
    [
        (0.00001, "0.000010"),
        (0.0000004, "0.000000"),
        (12.5, "12.500000"),
        (1234567.891, "1234567.891000"),
        (None, "0.000000"),
    ],
)
def test_csv_cost_is_a_plain_decimal(cost: float | None, csv_cost: str) -> None:
    groups = aggregate([row("UA", "C1", "m", 1, 1, cost, 1)], GroupBy.USER)
    (line,) = csv.DictReader(io.StringIO(render(groups, by=GroupBy.USER, fmt=Format.CSV)))
    assert line["cost_usd"] == csv_cost


NAMES = {"T1": 'Acme, Inc. "Ops"'}


@pytest.mark.parametrize(
    ("fmt", "shown"),
    [
        (Format.TABLE, lambda out: out.splitlines()[2].startswith('T1 (Acme, Inc. "Ops")  ')),
        (
            Format.CSV,
            lambda out: next(csv.DictReader(io.StringIO(out)))["name"] == 'Acme, Inc. "Ops"',
        ),
        (Format.JSON, lambda out: json.loads(out)[0]["name"] == 'Acme, Inc. "Ops"'),
    ],
)
def test_stored_names_are_shown_next_to_ids(fmt: Format, shown: Callable[[str], bool]) -> None:
    out = render(aggregate(ROWS, GroupBy.TEAM), by=GroupBy.TEAM, fmt=fmt, names=NAMES)
    assert shown(out), out


def test_usage_as_prometheus_text() -> None:
    groups = aggregate(ROWS, GroupBy.CHANNEL)
    out = render(groups, by=GroupBy.CHANNEL, fmt=Format.PROMETHEUS, names={"C1": "general"})
    samples = {
        (sample.name, sample.labels["channel"], sample.labels["name"]): sample.value
        for family in text_string_to_metric_families(out + "\n")
        for sample in family.samples
    }
    assert samples[("bot_usage_answers", "C1", "general")] == 2
    assert samples[("bot_usage_answers", "C2", "")] == 1
    assert samples[("bot_usage_input_tokens", "C1", "general")] == 300
    assert samples[("bot_usage_cost_usd", "C1", "general")] == pytest.approx(0.006)
    assert samples[("bot_usage_unpriced_answers", "C2", "")] == 1
    assert "# TYPE bot_usage_answers gauge" in out.splitlines()
