"""Usage figures: turn rows grouped by team, channel, user, model or day, as a terminal
table, CSV, JSON or Prometheus text (pure)."""

from __future__ import annotations

import csv
import enum
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bot.admin.prices import UNKNOWN_PRICE, format_cost


class GroupBy(enum.StrEnum):
    TEAM = "team"
    CHANNEL = "channel"
    USER = "user"
    MODEL = "model"
    DAY = "day"


class Format(enum.StrEnum):
    TABLE = "table"
    CSV = "csv"
    JSON = "json"
    PROMETHEUS = "prometheus"


@dataclass(frozen=True)
class UsageRow:
    """One turn's stored usage."""

    team_id: str
    channel_id: str
    user_id: str
    model: str
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost_usd: float | None
    at: float

    def key(self, by: GroupBy) -> str:
        if by is GroupBy.DAY:
            return datetime.fromtimestamp(self.at, UTC).strftime("%Y-%m-%d")
        return {
            GroupBy.TEAM: self.team_id,
            GroupBy.CHANNEL: self.channel_id,
            GroupBy.USER: self.user_id,
            GroupBy.MODEL: self.model,
        }[by]


@dataclass
class Totals:
    answers: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_answers: int = 0
    models: set[str] = field(default_factory=set)

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def add(self, row: UsageRow) -> None:
        self.answers += 1
        self.input_tokens += row.input_tokens
        self.cached_input_tokens += row.cached_input_tokens
        self.output_tokens += row.output_tokens
        self.reasoning_tokens += row.reasoning_tokens
        self.models.add(row.model)
        if row.cost_usd is None:
            self.unpriced_answers += 1
        else:
            self.cost_usd += row.cost_usd

    @property
    def counts_text(self) -> str:
        """ "1 answer, 1,200 tokens" """
        return f"{counted(self.answers, 'answer')}, {counted(self.tokens, 'token')}"

    @property
    def cost_text(self) -> str:
        """ "$0.0123", "unknown price", or "$0.0123 + unknown price" when some are unpriced."""
        if self.unpriced_answers == self.answers and self.answers:
            return UNKNOWN_PRICE
        text = format_cost(self.cost_usd)
        return f"{text} + {UNKNOWN_PRICE}" if self.unpriced_answers else text


def counted(count: int, noun: str) -> str:
    """ "1 answer", "2 answers", "1,234 answers" (the nouns here take an s)."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def aggregate(rows: Iterable[UsageRow], by: GroupBy) -> list[tuple[str, Totals]]:
    """Totals per group; days in order, everything else by cost then tokens, largest first."""
    groups: dict[str, Totals] = {}
    for row in rows:
        groups.setdefault(row.key(by), Totals()).add(row)
    items = list(groups.items())
    if by is GroupBy.DAY:
        return sorted(items)
    return sorted(items, key=lambda item: (-item[1].cost_usd, -item[1].tokens, item[0]))


def total(rows: Iterable[UsageRow]) -> Totals:
    totals = Totals()
    for row in rows:
        totals.add(row)
    return totals


COLUMNS = (
    "answers",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_usd",
    "unpriced_answers",
)


def _values(totals: Totals) -> list[int | float]:
    return [
        totals.answers,
        totals.input_tokens,
        totals.cached_input_tokens,
        totals.output_tokens,
        totals.reasoning_tokens,
        round(totals.cost_usd, 6),
        totals.unpriced_answers,
    ]


def _csv_values(totals: Totals) -> list[int | str]:
    """As `_values`, the cost a plain decimal in dollars (never `1e-05`)."""
    return [f"{v:.6f}" if isinstance(v, float) else v for v in _values(totals)]


def render(
    groups: Sequence[tuple[str, Totals]],
    *,
    by: GroupBy,
    fmt: Format,
    names: Mapping[str, str] | None = None,
) -> str:
    """The report; `names` are the stored names of the groups' ids (a workspace's name)."""
    names = names or {}
    if fmt is Format.JSON:
        return json.dumps(
            [
                {
                    by.value: key,
                    "name": names.get(key),
                    **dict(zip(COLUMNS, _values(t), strict=True)),
                }
                for key, t in groups
            ],
            indent=2,
            ensure_ascii=False,
        )
    if fmt is Format.CSV:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([by.value, "name", *COLUMNS])
        for key, totals in groups:
            writer.writerow([key, names.get(key, ""), *_csv_values(totals)])
        return out.getvalue().rstrip("\n")
    if fmt is Format.PROMETHEUS:
        from bot.admin.report_prometheus import prometheus_text

        return prometheus_text(groups, by=by, names=names, columns=COLUMNS, values=_values)
    return _table(groups, by=by, names=names)


def labelled(key: str, names: Mapping[str, str]) -> str:
    """ "T0001 (Acme)" when the id has a stored name, else the id."""
    name = names.get(key)
    return f"{key} ({name})" if name else key


def _table(groups: Sequence[tuple[str, Totals]], *, by: GroupBy, names: Mapping[str, str]) -> str:
    header = [by.value, "answers", "input", "cached", "output", "reasoning", "est. cost"]
    lines = [
        [labelled(key, names), *(f"{v:,}" for v in _values(t)[:5]), t.cost_text]
        for key, t in groups
    ]
    if groups:
        whole = total_of(t for _, t in groups)
        lines.append(["TOTAL", *(f"{v:,}" for v in _values(whole)[:5]), whole.cost_text])
    else:
        return "No usage recorded in this period."
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]

    def fmt_row(row: list[str]) -> str:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    body = [fmt_row(row) for row in lines[:-1]]
    return "\n".join([fmt_row(header), rule, *body, rule, fmt_row(lines[-1])])


def total_of(parts: Iterable[Totals]) -> Totals:
    whole = Totals()
    for part in parts:
        whole.answers += part.answers
        whole.input_tokens += part.input_tokens
        whole.cached_input_tokens += part.cached_input_tokens
        whole.output_tokens += part.output_tokens
        whole.reasoning_tokens += part.reasoning_tokens
        whole.cost_usd += part.cost_usd
        whole.unpriced_answers += part.unpriced_answers
        whole.models |= part.models
    return whole
