"""The Bolt app and the HTTP routes around it (`POST /slack/events`, `GET /healthz`)."""

from __future__ import annotations

import json
import logging
import time

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.logger.messages import (
    warning_client_prioritized_and_token_skipped,
    warning_token_skipped,
)
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import metrics
from bot.conversation import ConversationService
from bot.listeners import register_listeners
from bot.settings import Settings

log = logging.getLogger(__name__)

# Slack allows 40,000 characters of message text; an event envelope around it stays far below.
MAX_EVENT_BYTES = 1_000_000


class _TokenNoticeFilter(logging.Filter):
    """Drops Bolt's start-up notices that the client and `authorize` we pass win over
    SLACK_BOT_TOKEN, which Bolt reads from the environment itself: that is the intent."""

    notices = frozenset({warning_client_prioritized_and_token_skipped(), warning_token_skipped()})

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() not in self.notices


def build_bolt_app(
    *,
    settings: Settings,
    client: AsyncWebClient,
    service: ConversationService,
    identity: AuthorizeResult,
) -> AsyncApp:
    """The ack waits for the listener (`process_before_response`), and the listener only
    stores the message: so whatever Slack has been acknowledged for is already durable.

    `identity` is the bot's own `auth.test`, made once at start; Bolt would otherwise call it
    again for the first requests, once per request arriving before the first answer.
    """

    async def authorize(**_: object) -> AuthorizeResult:
        return identity

    bolt_logger = logging.getLogger("slack_bolt.AsyncApp")
    if not any(isinstance(f, _TokenNoticeFilter) for f in bolt_logger.filters):
        bolt_logger.addFilter(_TokenNoticeFilter())
    app = AsyncApp(
        client=client,
        authorize=authorize,
        signing_secret=settings.slack_signing_secret or "unused-in-socket-mode",
        process_before_response=True,
        ignoring_self_events_enabled=True,
        url_verification_enabled=True,
    )
    register_listeners(app, service, settings)
    return app


def build_web_app(*, bolt: AsyncApp, settings: Settings, engine: AsyncEngine) -> web.Application:
    verifier = SignatureVerifier(settings.slack_signing_secret)

    async def slack_events(request: web.Request) -> web.Response:
        if (request.content_length or 0) > MAX_EVENT_BYTES:
            return web.json_response({"error": "request too large"}, status=413)
        body = await request.read()
        if not verifier.is_valid_request(body, dict(request.headers)):
            return web.json_response({"error": "invalid or stale signature"}, status=401)
        if request.content_type == "application/json" and not _is_json_object(body):
            return web.json_response({"error": "malformed JSON body"}, status=400)
        started = time.monotonic()
        bolt_response = await bolt.async_dispatch(await to_bolt_request(request))
        metrics.ack_took(time.monotonic() - started)
        if bolt_response.status == 404:
            # An event the bot has no listener for: acknowledge it, or Slack keeps retrying.
            return web.Response(status=200)
        return await to_aiohttp_response(bolt_response)

    async def healthz(_: web.Request) -> web.Response:
        try:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception as exc:
            log.warning("health check: database unreachable: %s", type(exc).__name__)
            return web.json_response({"ok": False, "database": "unreachable"}, status=503)
        return web.json_response({"ok": True, "database": "ok"})

    web_app = web.Application(client_max_size=MAX_EVENT_BYTES)
    web_app.router.add_post("/slack/events", slack_events)
    web_app.router.add_get("/healthz", healthz)
    web_app.add_routes([metrics.route(engine)])
    return web_app


def _is_json_object(body: bytes) -> bool:
    try:
        return isinstance(json.loads(body), dict)
    except ValueError:
        return False
