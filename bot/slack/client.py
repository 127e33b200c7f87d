"""Slack's Web API client as the bot makes it: the shared HTTP session, the timeout of one
call, and the SDK's retry handlers (see `bot.slack.errors` for which layer retries what)."""

from __future__ import annotations

import aiohttp
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

SLACK_TIMEOUT_S = 15
"""How long one Web API call may take, connection and answer included."""


def make_slack_session() -> aiohttp.ClientSession:
    """The HTTP session every Slack client of the process shares. The SDK applies its own
    `timeout` only to sessions it opens itself, so the shared one carries it: without it a
    Slack that accepts the connection but never answers would hold a call for aiohttp's
    default of five minutes."""
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SLACK_TIMEOUT_S))


def make_web_client(
    *, token: str, base_url: str, session: aiohttp.ClientSession | None = None
) -> AsyncWebClient:
    """Slack's Web API client with the bot's retry policy: rate limits (honouring
    Retry-After), connection errors and 5xx are retried by the SDK on every call.

    Given a `session`, every call reuses its connections; without one the SDK opens (and
    closes) a new HTTP session, so a new connection and TLS handshake, for every call.
    """
    return AsyncWebClient(
        token=token,
        base_url=base_url,
        session=session,
        timeout=SLACK_TIMEOUT_S,
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(max_retry_count=3),
            AsyncRateLimitErrorRetryHandler(max_retry_count=5),
            AsyncServerErrorRetryHandler(max_retry_count=3),
        ],
    )


def without_rate_limit_retries(client: AsyncWebClient) -> AsyncWebClient:
    """The same token and address, retrying connection errors and 5xx but not a 429: a
    rate-limited read gives up instead of waiting out Slack's minute."""
    return AsyncWebClient(
        token=client.token,
        base_url=client.base_url,
        timeout=client.timeout,
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(max_retry_count=3),
            AsyncServerErrorRetryHandler(max_retry_count=3),
        ],
    )
