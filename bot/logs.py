"""Logging set-up: readable lines, or (`LOG_FORMAT=json`) one JSON object per line.

Each JSON line carries the turn id, team, channel and outcome when the code logging it works
on a turn: `bind_turn` puts them in a context variable for the task handling the turn (and
`extra={"turn_id": …}` on a call overrides them). A line with `extra={"fields": {…}}` (the
per-turn line) carries those as JSON fields, or as `name=value` words after the message in
the text format. Message text is logged at DEBUG only, by the callers; this module adds
nothing from messages.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from bot.redact import redact

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
TURN_FIELDS = ("turn_id", "team", "channel", "outcome")

_turn: ContextVar[dict[str, Any] | None] = ContextVar("bot_turn", default=None)


def bind_turn(turn_id: int, team: str, channel: str) -> None:
    """From here on in this task, log lines name this turn."""
    _turn.set({"turn_id": turn_id, "team": team, "channel": channel})


def note_outcome(outcome: str | None) -> None:
    current = _turn.get()
    if current is not None and outcome:
        current["outcome"] = outcome


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_turn.get() or {})
        for name in TURN_FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        entry.update(_fields(record))
        if record.exc_info:
            entry["error"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class RedactSecrets(logging.Filter):
    """At the handler, so every logger's records pass it (slack_sdk's and the OpenAI SDK's
    request logging included): the message, its traceback and stack come out with every
    secret replaced (bot/redact.py), at every level."""

    def __init__(self, literals: Iterable[str] = ()) -> None:
        super().__init__()
        self._literals = tuple(sorted(set(literals), key=len, reverse=True))
        self._plain = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage(), self._literals), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._plain.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self._literals)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self._literals)
        return True


class TextFormatter(logging.Formatter):
    """The readable line, with a record's fields as `name=value` words after the message."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        words = [f"{name}={_word(value)}" for name, value in _fields(record).items()]
        return " ".join([line, *words])


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, dict) else {}


def _word(value: object) -> str:
    return "-" if value is None else str(value)


def configure(level: str, log_format: str, *, secrets: Iterable[str] = ()) -> None:
    """Log to stderr; `secrets`: the configured secret values, never logged as they are."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(RedactSecrets(secrets))
    logging.basicConfig(level=level, handlers=[handler], force=True)
