"""Translate the openai SDK's exceptions into the two the service acts on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import openai

from bot.assistants.base import AssistantRejected, AssistantUnavailable

_RETRYABLE_STATUS = {408, 409, 429}


@contextmanager
def translated_errors(action: str) -> Iterator[None]:
    try:
        yield
    except openai.APIConnectionError as exc:  # includes timeouts
        raise AssistantUnavailable(f"{action}: {type(exc).__name__}") from exc
    except openai.APIStatusError as exc:
        if exc.status_code >= 500 or exc.status_code in _RETRYABLE_STATUS:
            raise AssistantUnavailable(f"{action}: HTTP {exc.status_code}") from exc
        raise AssistantRejected(f"{action}: HTTP {exc.status_code} {exc.message}") from exc
