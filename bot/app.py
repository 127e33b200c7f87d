"""The Bolt app and the HTTP routes around it (`POST /slack/events`, `GET /healthz`; metrics
are served on METRICS_PORT only, by bot.metrics)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.logger.messages import (
    warning_client_prioritized_and_token_skipped,
    warning_token_skipped,
)
from slack_bolt.oauth.async_oauth_flow import AsyncOAuthFlow
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import metrics
from bot.admin.service import AdminService
from bot.assistants.base import AssistantBackend
from bot.conversation import ConversationService
from bot.health import healthz_route
from bot.http_outcomes import HttpOutcome
from bot.installations import WorkspaceAuthorize, Workspaces
from bot.listeners import installs, register_listeners
from bot.settings import Settings
from bot.turns.wakeups import RunWakeups
from bot.webhooks import WebhookReceiver

log = logging.getLogger(__name__)

# Slack allows 40,000 characters of message text; an event envelope around it stays far below.
MAX_EVENT_BYTES = 1_000_000
MAX_CLOCK_SKEW_S = 300
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


class Rejection(HttpOutcome):
    """Why a request to `/slack/events` is turned away, with the status Slack (or a forger)
    gets: each is the sender's fault, so none is a 5xx or worth a traceback."""

    TOO_LARGE = (413, "request too large")
    BAD_SIGNATURE = (401, "invalid or stale signature")
    NOT_UTF8 = (400, "body is not UTF-8")
    MALFORMED_BODY = (400, "malformed JSON body")


def check_request(
    body: bytes,
    headers: Mapping[str, str],
    *,
    signing_secret: str,
    now: float,
) -> Rejection | None:
    """Whether a request may reach Bolt: signed by Slack within five minutes (over the raw
    bytes, as Slack signs them), UTF-8, and a body Bolt can parse without failing."""
    lowered = {key.lower(): value for key, value in headers.items()}
    timestamp = lowered.get("x-slack-request-timestamp", "")
    signature = lowered.get("x-slack-signature", "")
    if not signing_secret or not _TIMESTAMP.fullmatch(timestamp):
        return Rejection.BAD_SIGNATURE
    if abs(now - int(timestamp)) > MAX_CLOCK_SKEW_S:
        return Rejection.BAD_SIGNATURE
    expected = (
        "v0="
        + hmac.new(
            signing_secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256
        ).hexdigest()
    )
    if not hmac.compare_digest(expected.encode(), signature.encode(errors="replace")):
        return Rejection.BAD_SIGNATURE
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return Rejection.NOT_UTF8
    content_type = lowered.get("content-type", "").split(";")[0].strip().lower()
    if not _bolt_can_parse(text, content_type):
        return Rejection.MALFORMED_BODY
    return None


def _bolt_can_parse(text: str, content_type: str) -> bool:
    """Mirrors `slack_bolt.request.internals.parse_body`, which raises on bad JSON: a JSON
    body (by type, or by its first character), or a form whose `payload` field is JSON."""
    if not text:
        return True
    if content_type == "application/json" or text.startswith("{"):
        return _is_json_object(text)
    if "payload" in text:
        payload = dict(parse_qsl(text, keep_blank_values=True)).get("payload")
        return payload is None or _is_json_object(payload)
    return True


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
    admin: AdminService,
    backend: AssistantBackend,
    identity: AuthorizeResult | None = None,
    workspaces: Workspaces | None = None,
    oauth_flow: AsyncOAuthFlow | None = None,
) -> AsyncApp:
    """The ack waits for the listener (`process_before_response`), and the listener only
    stores the message: so whatever Slack has been acknowledged for is already durable.

    Single-token mode: `identity` is the bot's own `auth.test`, made once at start; Bolt
    would otherwise call it again for the first requests, once per request arriving before
    the first answer. OAuth mode: `workspaces` finds each event's installation, and
    `oauth_flow` serves the install pages.
    """
    authorize: Any
    if workspaces is not None:
        authorize = WorkspaceAuthorize(workspaces)
    else:
        assert identity is not None

        async def authorize(**_: object) -> AuthorizeResult:
            return identity

    bolt_logger = logging.getLogger("slack_bolt.AsyncApp")
    if not any(isinstance(f, _TokenNoticeFilter) for f in bolt_logger.filters):
        bolt_logger.addFilter(_TokenNoticeFilter())
    app = AsyncApp(
        # The name Bolt would derive itself by reading the source of every frame on the
        # stack (inspect.stack()), which costs each start up to tens of milliseconds.
        name="app.py",
        client=client,
        authorize=authorize,
        oauth_flow=oauth_flow,
        signing_secret=settings.slack_signing_secret or "unused-in-socket-mode",
        process_before_response=True,
        ignoring_self_events_enabled=True,
        url_verification_enabled=True,
    )
    register_listeners(app, service, admin, settings)
    if workspaces is not None:
        installs.register(app, workspaces, settings, backend=backend)
    return app


def build_web_app(
    *,
    bolt: AsyncApp,
    settings: Settings,
    engine: AsyncEngine,
    wakeups: RunWakeups | None = None,
) -> web.Application:
    async def slack_events(request: web.Request) -> web.Response:
        if (request.content_length or 0) > MAX_EVENT_BYTES:
            return _rejected(Rejection.TOO_LARGE)
        body = await request.read()
        rejection = check_request(
            body,
            request.headers,
            signing_secret=settings.slack_signing_secret,
            now=time.time(),
        )
        if rejection is not None:
            return _rejected(rejection)
        started = time.monotonic()
        bolt_response = await bolt.async_dispatch(await to_bolt_request(request))
        metrics.ack_took(time.monotonic() - started)
        if bolt_response.status == 404:
            # An event the bot has no listener for: acknowledge it, or Slack keeps retrying.
            return web.Response(status=200)
        return await to_aiohttp_response(bolt_response)

    web_app = web.Application(client_max_size=MAX_EVENT_BYTES)
    web_app.router.add_post("/slack/events", slack_events)
    web_app.add_routes([healthz_route(engine)])
    flow = bolt.oauth_flow
    if flow is not None:

        async def install(request: web.Request) -> web.Response:
            assert flow is not None
            return await to_aiohttp_response(
                await flow.handle_installation(await to_bolt_request(request))
            )

        async def oauth_redirect(request: web.Request) -> web.Response:
            assert flow is not None
            return await to_aiohttp_response(
                await flow.handle_callback(await to_bolt_request(request))
            )

        web_app.router.add_get(flow.install_path, install)
        web_app.router.add_get(flow.redirect_uri_path, oauth_redirect)
    if settings.openai_webhook_secret:  # POST /openai/webhook: OpenAI says a run ended
        add_webhook_route(web_app, settings.openai_webhook_secret, engine, wakeups)
    return web_app


def add_webhook_route(
    web_app: web.Application, secret: str, engine: AsyncEngine, wakeups: RunWakeups | None
) -> None:
    receiver = WebhookReceiver(secret=secret, engine=engine, wakeups=wakeups)

    async def close_receiver(_: web.Application) -> None:
        await receiver.close()

    web_app.add_routes([receiver.route()])
    web_app.on_cleanup.append(close_receiver)


def _rejected(rejection: Rejection) -> web.Response:
    log.info("refused a request to /slack/events: %s", rejection.reason)
    return web.json_response({"error": rejection.reason}, status=rejection.status)


def _is_json_object(body: str) -> bool:
    try:
        return isinstance(json.loads(body), dict)
    except ValueError:
        return False
