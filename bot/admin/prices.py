"""What a turn costs: a price table for OpenAI's models, overridable by `PRICES_FILE` (pure).

Prices are US dollars per 1M tokens (input, cached input, output) from OpenAI's published
pricing page (platform.openai.com/docs/pricing), standard tier, as of 2025-12. Reasoning
tokens are billed as output and are already counted in the output tokens the API reports.
Update them with a `PRICES_FILE` (JSON or TOML) mapping model → prices:

    {"gpt-5-mini": {"input": 0.25, "cached_input": 0.025, "output": 2.0},
     "llama-3.1-70b": {"input": 0, "output": 0}}
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bot.assistants.base import Usage

UNKNOWN_PRICE = "unknown price"


@dataclass(frozen=True)
class Price:
    """US dollars per 1M tokens; `cached_input` None means cached input costs full price."""

    input: float
    output: float
    cached_input: float | None = None


DEFAULT_PRICES: dict[str, Price] = {
    "gpt-5": Price(1.25, 10.00, 0.125),
    "gpt-5-mini": Price(0.25, 2.00, 0.025),
    "gpt-5-nano": Price(0.05, 0.40, 0.005),
    "gpt-5-chat-latest": Price(1.25, 10.00, 0.125),
    "gpt-5.1": Price(1.25, 10.00, 0.125),
    "gpt-4.1": Price(2.00, 8.00, 0.50),
    "gpt-4.1-mini": Price(0.40, 1.60, 0.10),
    "gpt-4.1-nano": Price(0.10, 0.40, 0.025),
    "gpt-4o": Price(2.50, 10.00, 1.25),
    "gpt-4o-mini": Price(0.15, 0.60, 0.075),
    "o1": Price(15.00, 60.00, 7.50),
    "o3": Price(2.00, 8.00, 0.50),
    "o3-mini": Price(1.10, 4.40, 0.55),
    "o4-mini": Price(1.10, 4.40, 0.275),
}

# "gpt-4o-2024-08-06", "gpt-5-mini-2025-08-07": a dated snapshot is priced as its base model.
_DATE_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{4})$")


class PricesError(ValueError):
    """PRICES_FILE cannot be read or has a bad entry; the message says which."""


class PriceTable:
    def __init__(self, prices: Mapping[str, Price]) -> None:
        self._prices = {name.lower(): price for name, price in prices.items()}

    @property
    def models(self) -> tuple[str, ...]:
        """The priced model names (lower case)."""
        return tuple(self._prices)

    def price_of(self, model: str) -> Price | None:
        name = model.strip().lower()
        while True:
            if name in self._prices:
                return self._prices[name]
            base = _DATE_SUFFIX.sub("", name)
            if base == name:
                return None
            name = base

    def cost(self, usage: Usage) -> float | None:
        """Estimated US dollars for a turn's usage; None for a model without a price."""
        price = self.price_of(usage.model)
        if price is None:
            return None
        cached = min(usage.cached_input_tokens, usage.input_tokens)
        cached_rate = price.input if price.cached_input is None else price.cached_input
        dollars = (
            (usage.input_tokens - cached) * price.input
            + cached * cached_rate
            + usage.output_tokens * price.output
        )
        return dollars / 1_000_000


def load_price_table(path: str | None) -> PriceTable:
    """The shipped prices, with a PRICES_FILE's entries added or replacing them."""
    prices = dict(DEFAULT_PRICES)
    if path:
        prices.update(parse_prices(_read(path), source=path))
    return PriceTable(prices)


def _read(path: str) -> dict[str, object]:
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise PricesError(f"PRICES_FILE {path!r} cannot be read: {exc.strerror}") from None
    try:
        if path.endswith(".toml"):
            return tomllib.loads(raw.decode())
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PricesError(f"PRICES_FILE {path!r} is not valid JSON or TOML: {exc}") from None
    if not isinstance(data, dict):
        raise PricesError(f"PRICES_FILE {path!r} must map model names to prices")
    return data


def parse_prices(data: Mapping[str, object], *, source: str = "PRICES_FILE") -> dict[str, Price]:
    prices: dict[str, Price] = {}
    for model, entry in data.items():
        if not isinstance(entry, Mapping):
            raise PricesError(f"{source}: {model!r} must have input and output prices")
        try:
            input_price = _number(entry["input"])
            output_price = _number(entry["output"])
            cached = entry.get("cached_input")
            prices[model] = Price(
                input_price, output_price, None if cached is None else _number(cached)
            )
        except (KeyError, TypeError, ValueError):
            raise PricesError(
                f"{source}: {model!r} needs numbers for input and output (and cached_input)"
            ) from None
    return prices


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(value)
    return float(value)


def format_cost(cost: float | None) -> str:
    if cost is None:
        return UNKNOWN_PRICE
    if cost >= 1:
        return f"${cost:,.2f}"
    return f"${cost:.4f}" if cost >= 0.01 else f"${cost:.6f}"
