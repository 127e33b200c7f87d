"""`POST /openai/webhook`: OpenAI announces that a background response has ended.

With OPENAI_WEBHOOK_SECRET set (HTTP mode, Responses API), OpenAI calls this route when a
background response completes, fails, is cancelled or ends incomplete. The request is
verified with the SDK (`webhooks.unwrap`: Standard Webhooks signature, 5-minute window),
recorded once by its `webhook-id` (delivery is at least once, so the same event may come
again, even to another process), and the turn waiting on that response is woken at once
(`RunWakeups`), so poll delivery answers without waiting for its next poll.

A webhook received by another process of the bot is recorded there and wakes nothing here:
the turn's holder sees the response's end at its next check, the safety-net poll every
OPENAI_WEBHOOK_POLL_S seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import openai
from aiohttp import web
from sqlalchemy import delete
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.http_outcomes import HttpOutcome
from bot.settings import Settings
from bot.store.database import dialect_insert
from bot.store.db import database_health
from bot.store.webhook_models import WebhookEvent
from bot.turns.wakeups import RunWakeups

log = logging.getLogger(__name__)

ROUTE = "/openai/webhook"
MAX_WEBHOOK_BYTES = 256 * 1024
"""OpenAI's events carry ids only; anything far larger is not one."""
KEEP_S = 3 * 86400
"""How long a webhook id is remembered: OpenAI retries a failed delivery for up to 72 h."""
PRUNE_EVERY_S = 3600.0
MAX_ID_CHARS = 128
RUN_ENDED = frozenset(
    {"response.completed", "response.failed", "response.cancelled", "response.incomplete"}
)
"""The events that end a background response: each wakes the turn waiting on it."""


class WebhookOutcome(HttpOutcome):
    """What became of one request, with the HTTP status OpenAI gets. Only 2xx ends OpenAI's
    retries, so a duplicate or an event the bot does not act on is a success too."""

    WOKE = (200, "a waiting turn was woken")
    IGNORED = (200, "not an event the bot acts on")
    DUPLICATE = (200, "already received")
    TOO_LARGE = (413, "request too large")
    MALFORMED = (400, "not a webhook event")
    BAD_SIGNATURE = (401, "invalid or stale signature")
    UNAVAILABLE = (503, "the database is unavailable; OpenAI retries later")


def ended_response(event_type: str, object_id: str | None) -> str | None:
    """The response id whose waiting turn an event should wake (None: wake nobody)."""
    return object_id if event_type in RUN_ENDED and object_id else None


def unused_secret(settings: Settings) -> str | None:
    """Why OPENAI_WEBHOOK_SECRET is set but cannot serve (None: it serves, or is not set)."""
    if not settings.openai_webhook_secret or settings.openai_webhooks:
        return None
    if settings.socket_mode:
        return "Socket Mode listens on no port for OpenAI to call"
    return (
        "webhooks announce background responses (ASSISTANT_API=responses), not "
        + settings.assistant_api
    )


class WebhookReceiver:
    """Verifies, deduplicates and acts on OpenAI's webhook events."""

    def __init__(self, *, secret: str, engine: AsyncEngine, wakeups: RunWakeups | None) -> None:
        self._secret = secret
        self._engine = engine
        self._wakeups = wakeups
        # The SDK's verifier hangs off a client; this one never sends a request.
        self._client = openai.AsyncOpenAI(api_key="unused", webhook_secret=secret)
        self._pruned_at = 0.0

    async def close(self) -> None:
        await self._client.close()

    async def receive(self, body: bytes, headers: Mapping[str, str]) -> WebhookOutcome:
        try:
            event: Any = self._client.webhooks.unwrap(body, headers, secret=self._secret)
        except openai.InvalidWebhookSignatureError:
            return WebhookOutcome.BAD_SIGNATURE
        except ValueError:  # a missing header, a body that is not UTF-8 JSON
            return WebhookOutcome.MALFORMED
        event_type = getattr(event, "type", None)
        webhook_id = _header(headers, "webhook-id")
        if not isinstance(event_type, str) or not webhook_id or len(webhook_id) > MAX_ID_CHARS:
            return WebhookOutcome.MALFORMED
        object_id = getattr(getattr(event, "data", None), "id", None)
        object_id = object_id if isinstance(object_id, str) else None
        try:
            fresh = await self._record(webhook_id, event_type, object_id)
        except (SQLAlchemyError, OSError) as exc:
            database_health(self._engine).report(log, exc, "an OpenAI webhook was not recorded")
            return WebhookOutcome.UNAVAILABLE
        if not fresh:
            log.info("openai webhook %s (%s): already received", webhook_id, event_type)
            return WebhookOutcome.DUPLICATE
        response_id = ended_response(event_type, object_id)
        if response_id is None:
            return WebhookOutcome.IGNORED
        log.info("openai webhook: %s for %s", event_type, response_id)
        if self._wakeups is not None:
            self._wakeups.notify(response_id)
        return WebhookOutcome.WOKE

    async def _record(self, webhook_id: str, event_type: str, object_id: str | None) -> bool:
        """Store the event's id; False if it was stored before (by any process)."""
        now = time.time()
        insert = dialect_insert(self._engine)
        statement = (
            insert(WebhookEvent)
            .values(
                webhook_id=webhook_id,
                event_type=event_type[:64],
                object_id=(object_id or "")[:128],
                received_at=now,
            )
            .on_conflict_do_nothing(index_elements=["webhook_id"])
        )
        async with self._engine.begin() as connection:
            inserted = bool((await connection.execute(statement)).rowcount)
            if now - self._pruned_at > PRUNE_EVERY_S:
                self._pruned_at = now
                await connection.execute(
                    delete(WebhookEvent).where(WebhookEvent.received_at < now - KEEP_S)
                )
        return inserted

    def route(self) -> web.RouteDef:
        async def openai_webhook(request: web.Request) -> web.Response:
            if (request.content_length or 0) > MAX_WEBHOOK_BYTES:
                return _answer(WebhookOutcome.TOO_LARGE)
            body = await request.read()
            if len(body) > MAX_WEBHOOK_BYTES:
                return _answer(WebhookOutcome.TOO_LARGE)
            return _answer(await self.receive(body, request.headers))

        return web.post(ROUTE, openai_webhook)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _answer(outcome: WebhookOutcome) -> web.Response:
    if outcome.status >= 400:
        log.info("refused a request to %s: %s", ROUTE, outcome.reason)
    return web.json_response({"result": outcome.reason}, status=outcome.status)
