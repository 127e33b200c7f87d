"""Translate the openai SDK's exceptions into the two the service acts on."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager

import openai

from bot.assistants.base import AssistantRejected, AssistantUnavailable, AssistantUnreachable

_RETRYABLE_STATUS = {408, 409, 429}


@contextmanager
def translated_errors(action: str) -> Iterator[None]:
    try:
        yield
    except openai.APIConnectionError as exc:  # includes timeouts
        if connection_refused(exc):
            raise AssistantUnreachable(f"{action}: connection refused") from exc
        raise AssistantUnavailable(f"{action}: {type(exc).__name__}") from exc
    except openai.APIStatusError as exc:
        if exc.status_code >= 500 or exc.status_code in _RETRYABLE_STATUS:
            raise AssistantUnavailable(f"{action}: HTTP {exc.status_code}") from exc
        raise AssistantRejected(f"{action}: HTTP {exc.status_code} {exc.message}") from exc


@contextmanager
def gone_is_done(action: str) -> Iterator[None]:
    """`translated_errors` for deleting something: already gone (404) counts as deleted."""
    try:
        with translated_errors(action):
            yield
    except AssistantRejected as exc:
        if not isinstance(exc.__cause__, openai.NotFoundError):
            raise


def connection_refused(error: BaseException) -> bool:
    """The request never reached a server: the connection was refused.

    The SDK's aiohttp transport reports a refused connection as a *timeout*
    (`APITimeoutError` from `ConnectTimeout`); the `ConnectionRefusedError` is down the chain.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, ConnectionRefusedError):
            return True
        if isinstance(current, OSError) and current.errno == errno.ECONNREFUSED:
            return True
        seen.add(id(current))
        os_error = getattr(current, "os_error", None)  # aiohttp.ClientConnectorError
        current = current.__cause__ or current.__context__ or os_error
    return False
