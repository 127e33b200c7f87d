"""Usage totals in Prometheus' text format, for a scraper or a push to a Pushgateway (pure).

Each column is a gauge (the totals of the reported period), labelled with the group's id and,
when stored, its name: `bot_usage_answers{team="T0001",name="Acme"} 42`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from bot.admin.report import GroupBy, Totals

PREFIX = "bot_usage_"
_HELP = {
    "answers": "Answers in the period",
    "input_tokens": "Input tokens in the period",
    "cached_input_tokens": "Cached input tokens in the period",
    "output_tokens": "Output tokens in the period",
    "reasoning_tokens": "Reasoning tokens in the period",
    "cost_usd": "Estimated cost in US dollars in the period (priced answers only)",
    "unpriced_answers": "Answers in the period whose model has no price",
}


class _Totals(Collector):
    def __init__(self, families: list[GaugeMetricFamily]) -> None:
        self._families = families

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self._families


def prometheus_text(
    groups: Sequence[tuple[str, Totals]],
    *,
    by: GroupBy,
    names: Mapping[str, str],
    columns: Sequence[str],
    values: Callable[[Totals], list[int | float]],
) -> str:
    labels = [by.value, "name"]
    families = [
        GaugeMetricFamily(
            PREFIX + column, f"{_HELP.get(column, column)}, by {by.value}", labels=labels
        )
        for column in columns
    ]
    for key, totals in groups:
        for family, value in zip(families, values(totals), strict=True):
            family.add_metric([key, names.get(key, "")], float(value))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Totals(families))
    return generate_latest(registry).decode().rstrip("\n")
