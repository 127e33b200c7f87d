"""The one place that builds the bot, once, for every install mode.

    settings → database (migrated, stored tokens encrypted) → Slack → assistant backend →
    turn engine (store, approvals, admin, runner, dispatcher) → conversation service → Bolt

The install modes differ only in how Slack is reached (`_slack_access`): single-token mode
has one token and asks `auth.test` who the bot is; OAuth and org-wide installs find each
workspace's token in its installation and serve the install pages. Every part gets what it
needs from here, and nothing builds a part of its own. bot.runtime serves what this builds.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from aiohttp import ClientSession
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.oauth.async_oauth_flow import AsyncOAuthFlow
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.admin.service import AdminService
from bot.app import build_bolt_app
from bot.assistants.base import AssistantBackend
from bot.assistants.factory import make_backend
from bot.conversation import ConversationService
from bot.crypto import TokenCipher, UnreadableSecret, token_cipher
from bot.dispatcher import Dispatcher
from bot.installations import Workspaces, build_oauth_flow
from bot.intake import Intake
from bot.preflight import StartupError, check_slack_token, check_slack_url
from bot.settings import Settings
from bot.slack.client import make_slack_session, make_web_client
from bot.slack.gateway import SlackGateway, search_clients
from bot.store.db import (
    DatabaseHealth,
    ForeignKeyViolation,
    create_engine,
    create_intake_engine,
    database_health,
)
from bot.store.migrate import cannot_open, upgrade_schema
from bot.store.repository import Store
from bot.store.schema import DatabaseNotReady
from bot.store.secrets_at_rest import ensure_encrypted
from bot.tools.approvals import ApprovalStore
from bot.turns.delivery import Delivery
from bot.turns.prompt import PromptBuilder
from bot.turns.retry import RetryPolicy
from bot.turns.runner import HIDDEN_FROM_HISTORY, TurnRunner
from bot.turns.wakeups import RunWakeups

log = logging.getLogger("bot")


@dataclass
class Bot:
    """Everything built, ready to be served."""

    settings: Settings
    engine: AsyncEngine
    service: ConversationService
    bolt: AsyncApp
    backend: AssistantBackend
    wakeups: RunWakeups
    """OpenAI's webhooks (bot/webhooks.py) wake the turns waiting on runs."""
    workspaces: Workspaces | None = None
    """OAuth mode: each workspace's installation."""


@dataclass(frozen=True)
class _SlackAccess:
    """What differs between the install modes: how the bot reaches each workspace."""

    client: AsyncWebClient
    """The app's own client: the bot token's, or (OAuth) one without a token."""
    gateway: SlackGateway
    identity: AuthorizeResult | None = None
    """Single-token mode: who the bot is (`auth.test`, asked once at start)."""
    workspaces: Workspaces | None = None
    oauth_flow: AsyncOAuthFlow | None = None


@asynccontextmanager
async def running_bot(settings: Settings) -> AsyncIterator[Bot]:
    """The bot, built; `StartupError` (one line) if the database or Slack is not usable.
    What it opened is closed when the block ends."""
    async with AsyncExitStack() as opened:
        engine = await _open_database(settings)
        opened.push_async_callback(engine.dispose)
        cipher = await _encrypted_secrets(engine, settings)
        slack_http = make_slack_session()
        opened.push_async_callback(slack_http.close)
        slack = await _slack_access(settings, engine, cipher, slack_http)
        if slack.workspaces is not None:
            opened.push_async_callback(slack.workspaces.close)
        backend = make_backend(
            settings, engine, search_client=search_clients(slack.gateway.workspaces)
        )
        opened.push_async_callback(backend.close)
        intake_engine = create_intake_engine(settings.database_url, beside=engine)
        opened.push_async_callback(intake_engine.dispose)
        store = Store(engine, cipher=cipher, intake_engine=intake_engine)
        admin = AdminService(engine, settings, intake_engine=intake_engine)
        wakeups = RunWakeups()
        service = _conversation_service(settings, store, slack.gateway, backend, admin, wakeups)
        bolt = build_bolt_app(
            settings=settings,
            client=slack.client,
            service=service,
            admin=admin,
            backend=backend,
            identity=slack.identity,
            workspaces=slack.workspaces,
            oauth_flow=slack.oauth_flow,
        )
        bolt.error(_listener_error_handler(database_health(engine)))
        yield Bot(
            settings=settings,
            engine=engine,
            service=service,
            bolt=bolt,
            backend=backend,
            wakeups=wakeups,
            workspaces=slack.workspaces,
        )


async def _slack_access(
    settings: Settings, engine: AsyncEngine, cipher: TokenCipher, http: ClientSession
) -> _SlackAccess:
    def client_with(token: str) -> AsyncWebClient:
        return make_web_client(token=token, base_url=settings.slack_api_url, session=http)

    if not settings.oauth:
        client = client_with(settings.slack_bot_token)
        identity = await check_slack_token(client, settings)
        gateway = SlackGateway(client, bot_user_id=str(identity.bot_user_id))
        return _SlackAccess(client, gateway, identity=identity)
    assert settings.slack_client_id and settings.slack_client_secret
    assert settings.slack_state_secret
    client = client_with("")
    await check_slack_url(client, settings)
    workspaces = Workspaces(
        engine,
        client_id=settings.slack_client_id,
        client_secret=settings.slack_client_secret,
        make_client=client_with,
        refresh_minutes=settings.token_refresh_minutes,
        cipher=cipher,
    )
    flow = build_oauth_flow(
        workspaces,
        client=client,
        slack_api_url=settings.slack_api_url,
        scopes=settings.slack_scopes,
        state_secret=settings.slack_state_secret,
        client_secret=settings.slack_client_secret,
        redirect_uri=settings.slack_redirect_uri,
        delete_on_uninstall=settings.delete_data_on_uninstall,
    )
    gateway = SlackGateway(workspaces=workspaces)
    return _SlackAccess(client, gateway, workspaces=workspaces, oauth_flow=flow)


def _conversation_service(
    settings: Settings,
    store: Store,
    slack: SlackGateway,
    backend: AssistantBackend,
    admin: AdminService,
    wakeups: RunWakeups,
) -> ConversationService:
    """Intake, the dispatcher and the turn engine, sharing one retry policy and one
    approval store."""
    retry = RetryPolicy(base_s=settings.retry_base_s)
    approvals = ApprovalStore(store.engine, timeout_s=settings.approval_timeout_s)
    prompts = PromptBuilder(
        slack=slack, store=store, backend_name=backend.name, hidden_texts=HIDDEN_FROM_HISTORY
    )
    runner = TurnRunner(
        store=store,
        backend=backend,
        delivery=Delivery(slack, streamed=settings.delivery == "stream"),
        prompts=prompts,
        settings=settings,
        retry=retry,
        admin=admin,
        approvals=approvals,
        wakeups=wakeups,
    )
    dispatcher = Dispatcher(
        store=store,
        settings=settings,
        take_turn=runner.take_turn,
        retry=retry,
        sweep=approvals.sweep,
    )
    return ConversationService(
        store=store,
        slack=slack,
        intake=Intake(store=store, slack=slack, settings=settings),
        dispatcher=dispatcher,
        runner=runner,
        approvals=approvals,
        settings=settings,
    )


async def _open_database(settings: Settings) -> AsyncEngine:
    engine = create_engine(settings.database_url, pool_size=settings.db_pool_size)
    try:
        await upgrade_schema(engine, log_level=settings.log_level, log_format=settings.log_format)
    except (DatabaseNotReady, ForeignKeyViolation) as exc:
        await engine.dispose()
        raise StartupError(str(exc)) from None
    except (OSError, SQLAlchemyError) as exc:
        await engine.dispose()
        raise StartupError(cannot_open(exc)) from None
    return engine


async def _encrypted_secrets(engine: AsyncEngine, settings: Settings) -> TokenCipher:
    """The key for stored tokens, once every stored token is encrypted with its first key."""
    cipher = token_cipher(settings.token_encryption_keys, bot_token=settings.slack_bot_token)
    try:
        await ensure_encrypted(engine, cipher)
    except UnreadableSecret as exc:
        raise StartupError(str(exc)) from None
    return cipher


def _listener_error_handler(health: DatabaseHealth) -> Callable[[Exception], Awaitable[None]]:
    """Bolt's error handler: the request still fails (HTTP 500, so Slack redelivers), but a
    database outage is logged once by the tracker instead of a traceback per event."""

    async def on_error(error: Exception) -> None:
        health.report(log, error, "a Slack event could not be handled")

    return on_error
