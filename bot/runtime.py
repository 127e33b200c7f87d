"""Start-up and shutdown of one bot process."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import metrics
from bot.app import build_bolt_app, build_web_app
from bot.assistants import make_backend
from bot.assistants.errors import connection_refused
from bot.conversation import ConversationService
from bot.crypto import TokenCipher, UnreadableSecret, token_cipher
from bot.installations import Workspaces, build_oauth_flow
from bot.preflight import StartupError, check_openai, check_ports
from bot.settings import Settings
from bot.slack.client import SLACK_TIMEOUT_S, make_slack_session, make_web_client
from bot.slack.gateway import SlackGateway, search_clients
from bot.store.db import (
    DatabaseHealth,
    ForeignKeyViolation,
    create_engine,
    database_answers,
    database_health,
    migrate,
)
from bot.store.repository import Store
from bot.store.schema import DatabaseNotReady
from bot.store.secrets_at_rest import ensure_encrypted
from bot.webhooks import unused_secret

log = logging.getLogger("bot")

SOCKET_CLOSE_TIMEOUT_S = 5.0


@dataclass
class Bot:
    settings: Settings
    engine: AsyncEngine
    service: ConversationService
    bolt: AsyncApp
    workspaces: Workspaces | None = None


async def serve(settings: Settings, *, stop_signals: Sequence[signal.Signals] = ()) -> None:
    """Run the bot until a stop signal; `StartupError` if it cannot start.

    The signal handlers are installed before anything is awaited, so a stop signal works in
    every state: during start-up (a slow database, Slack or OpenAI) it abandons the start at
    once; once running it stops intake and lets answers finish for SHUTDOWN_GRACE_S; a second
    signal while that runs ends the answers in hand with a note the next start replaces, and
    a third abandons everything at once.
    """
    life = _Lifecycle()
    work = asyncio.create_task(_run(settings, life))

    def on_signal() -> None:
        if life.stop_now.is_set() or not life.ready.is_set():
            work.cancel()
        elif life.stop.is_set():
            life.stop_now.set()  # the second signal: end the answers in hand now
        life.stop.set()

    loop = asyncio.get_running_loop()
    for sig in stop_signals:
        loop.add_signal_handler(sig, on_signal)
    try:
        await asyncio.wait([work])
    finally:
        for sig in stop_signals:
            loop.remove_signal_handler(sig)
        if not work.done():
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
    if work.cancelled():
        log.info(_stopped_early(life))
        return
    work.result()


@dataclass
class _Lifecycle:
    """What a stop signal needs to know and to set: ready, stop (first signal: no new work,
    finish what is in hand), stop_now (second: end the answers in hand with a note)."""

    ready: asyncio.Event = field(default_factory=asyncio.Event)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    stop_now: asyncio.Event = field(default_factory=asyncio.Event)
    in_hand: Callable[[], int] = lambda: 0


def _stopped_early(life: _Lifecycle) -> str:
    """The last line of a start or a stop cut short: true about what was left."""
    if not life.ready.is_set():
        return "stopped during start-up; nothing had been taken in hand"
    if life.in_hand():
        return "stopped before finishing what was in hand; the next start resumes it"
    return "stopped"


async def _run(settings: Settings, life: _Lifecycle) -> None:
    check_ports(settings)
    await check_openai(settings)
    if (unused := unused_secret(settings)) is not None:
        log.warning("OPENAI_WEBHOOK_SECRET is set but not used: %s; polling as usual", unused)
    async with running_bot(settings) as bot:
        life.in_hand = lambda: bot.service.in_hand
        dispatcher = asyncio.create_task(bot.service.run())
        try:
            async with _intake(bot):
                life.ready.set()
                await life.stop.wait()
                log.info("stopping: no new work is taken")
            interrupted = await bot.service.shutdown(stop_now=life.stop_now)
        finally:
            dispatcher.cancel()
            await asyncio.gather(dispatcher, return_exceptions=True)
    if interrupted:
        log.info("stopped: %s interrupted; the next start resumes it", _answers(interrupted))
        return
    log.info("stopped")


def _answers(count: int) -> str:
    return "1 answer" if count == 1 else f"{count} answers"


@asynccontextmanager
async def running_bot(settings: Settings) -> AsyncIterator[Bot]:
    if settings.oauth:
        async with _running_oauth_bot(settings) as bot:
            yield bot
        return
    engine = await _open_database(settings)
    cipher = await _encrypted_secrets(engine, settings)
    slack_http = make_slack_session()
    client = make_web_client(
        token=settings.slack_bot_token, base_url=settings.slack_api_url, session=slack_http
    )
    try:
        identity = await _check_slack(client, settings)
        slack = SlackGateway(client, bot_user_id=str(identity.bot_user_id))
        backend = make_backend(settings, engine, search_client=search_clients(slack.workspaces))
        service = ConversationService(
            store=Store(engine, cipher=cipher), backend=backend, slack=slack, settings=settings
        )
        try:
            bolt = build_bolt_app(
                settings=settings, client=client, service=service, identity=identity
            )
            bolt.error(_listener_error_handler(database_health(engine)))
            yield Bot(settings=settings, engine=engine, service=service, bolt=bolt)
        finally:
            await backend.close()
    finally:
        await slack_http.close()
        await engine.dispose()


@asynccontextmanager
async def _running_oauth_bot(settings: Settings) -> AsyncIterator[Bot]:
    """OAuth mode: no token of its own; each workspace's comes from its installation."""
    assert settings.slack_client_id and settings.slack_client_secret
    assert settings.slack_state_secret
    engine = await _open_database(settings)
    cipher = await _encrypted_secrets(engine, settings)
    slack_http = make_slack_session()
    client = make_web_client(token="", base_url=settings.slack_api_url, session=slack_http)
    try:
        await _check_slack_reachable(client, settings)
        workspaces = Workspaces(
            engine,
            client_id=settings.slack_client_id,
            client_secret=settings.slack_client_secret,
            make_client=lambda token: make_web_client(
                token=token, base_url=settings.slack_api_url, session=slack_http
            ),
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
        backend = make_backend(settings, engine, search_client=search_clients(workspaces))
        service = ConversationService(
            store=Store(engine, cipher=cipher),
            backend=backend,
            slack=SlackGateway(workspaces=workspaces),
            settings=settings,
        )
        try:
            bolt = build_bolt_app(
                settings=settings,
                client=client,
                service=service,
                workspaces=workspaces,
                oauth_flow=flow,
            )
            bolt.error(_listener_error_handler(database_health(engine)))
            yield Bot(
                settings=settings,
                engine=engine,
                service=service,
                bolt=bolt,
                workspaces=workspaces,
            )
        finally:
            await backend.close()
            await workspaces.close()
    finally:
        await slack_http.close()
        await engine.dispose()


async def _encrypted_secrets(engine: AsyncEngine, settings: Settings) -> TokenCipher:
    """The key for stored tokens, once every stored token is encrypted with its first key."""
    cipher = token_cipher(settings.token_encryption_keys, bot_token=settings.slack_bot_token)
    try:
        await ensure_encrypted(engine, cipher)
    except UnreadableSecret as exc:
        await engine.dispose()
        raise StartupError(str(exc)) from None
    return cipher


async def _check_slack_reachable(client: AsyncWebClient, settings: Settings) -> None:
    """OAuth mode has no token to test: `api.test` proves SLACK_API_URL is Slack's API."""
    try:
        await client.api_test()
    except (SlackApiError, ValueError, TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise _slack_error(
            exc, settings, token="SLACK_API_URL", hint="check the address of Slack's Web API"
        ) from None


def _listener_error_handler(health: DatabaseHealth) -> Any:
    """Bolt's error handler: the request still fails (HTTP 500, so Slack redelivers), but a
    database outage is logged once by the tracker instead of a traceback per event."""

    async def on_error(error: Exception) -> None:
        health.report(log, error, "a Slack event could not be handled")

    return on_error


@asynccontextmanager
async def _intake(bot: Bot) -> AsyncIterator[None]:
    """Take Slack events (HTTP or Socket Mode) for as long as the block runs."""
    settings = bot.settings
    async with _metrics_server(bot):  # bound before `ready`, in both modes
        if settings.slack_app_token:
            async with _socket_mode(bot, settings.slack_app_token):
                yield
            return
        web_app = build_web_app(
            bolt=bot.bolt, settings=settings, engine=bot.engine, wakeups=bot.service.wakeups
        )
        async with _http_server(web_app, settings.port, setting="PORT"):
            log.info(
                "ready: listening on port %s, POST /slack/events (%s assistant API)",
                settings.port,
                settings.assistant_api,
            )
            yield


@asynccontextmanager
async def _socket_mode(bot: Bot, app_token: str) -> AsyncIterator[None]:
    settings = bot.settings
    # The SDK retries a refused app token every 10 s forever; ask once ourselves first, and
    # hand the address we got to the handler so it does not ask again.
    url = await _open_socket_url(bot.bolt.client, settings, app_token)
    handler = AsyncSocketModeHandler(bot.bolt, app_token)
    handler.client.wss_uri = url
    try:
        await handler.connect_async()  # type: ignore[no-untyped-call]
        health = build_health_app(bot.engine)
        port = settings.health_port
        if port is None:
            log.info("ready: Socket Mode connected (%s assistant API)", settings.assistant_api)
            yield
            return
        async with _http_server(health, port, setting="HEALTH_PORT or PORT"):
            log.info(
                "ready: Socket Mode connected, GET /healthz on port %s (%s assistant API)",
                port,
                settings.assistant_api,
            )
            yield
    finally:
        try:
            async with asyncio.timeout(SOCKET_CLOSE_TIMEOUT_S):
                await handler.close_async()  # type: ignore[no-untyped-call]
        except TimeoutError:
            log.warning("Socket Mode did not close within %.0f s", SOCKET_CLOSE_TIMEOUT_S)


@asynccontextmanager
async def _http_server(web_app: web.Application, port: int, *, setting: str) -> AsyncIterator[None]:
    runner = web.AppRunner(web_app, shutdown_timeout=5.0, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host="0.0.0.0", port=port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise StartupError(f"cannot listen on {setting} {port}: {exc.strerror}") from None
    try:
        yield
    finally:
        await runner.cleanup()


def build_health_app(engine: AsyncEngine) -> web.Application:
    """`GET /healthz` alone, for Socket Mode (which otherwise listens on no port)."""

    async def healthz(_: web.Request) -> web.Response:
        if await database_answers(engine):
            return web.json_response({"ok": True, "database": "ok"})
        return web.json_response({"ok": False, "database": "unreachable"}, status=503)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    return app


@asynccontextmanager
async def _metrics_server(bot: Bot) -> AsyncIterator[None]:
    """GET /metrics and /healthz on METRICS_PORT alone (token, cost and error figures
    are not for whoever reaches PORT); no METRICS_PORT, no metrics endpoint."""
    port = bot.settings.metrics_port
    if port is None:
        yield
        return
    async with _http_server(metrics.metrics_app(bot.engine), port, setting="METRICS_PORT"):
        log.info("metrics: GET /metrics and /healthz on port %s", port)
        yield


async def _open_database(settings: Settings) -> AsyncEngine:
    engine = create_engine(settings.database_url, pool_size=settings.db_pool_size)
    try:
        await migrate(engine)
    except (DatabaseNotReady, ForeignKeyViolation) as exc:
        await engine.dispose()
        raise StartupError(str(exc)) from None
    except (OSError, SQLAlchemyError) as exc:
        await engine.dispose()
        reason = getattr(exc, "orig", None) or exc
        raise StartupError(
            f"cannot open the database in DATABASE_URL ({type(reason).__name__}: "
            f"{str(reason).splitlines()[0][:160] if str(reason) else 'no detail'})"
        ) from None
    return engine


async def _check_slack(client: AsyncWebClient, settings: Settings) -> AuthorizeResult:
    """Who the bot is (`auth.test`), which also proves the token works."""
    try:
        response = await client.auth_test()
    except (SlackApiError, ValueError, TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise _slack_error(
            exc,
            settings,
            token="SLACK_BOT_TOKEN",
            hint="set it to the Bot User OAuth Token of your installed app",
        ) from None
    return AuthorizeResult.from_auth_test_response(
        bot_token=settings.slack_bot_token, auth_test_response=response
    )


async def _open_socket_url(client: AsyncWebClient, settings: Settings, app_token: str) -> str:
    """`apps.connections.open` with the app token: a Socket Mode address, or one line why not."""
    try:
        response = await client.apps_connections_open(app_token=app_token)
    except (SlackApiError, ValueError, TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise _slack_error(
            exc,
            settings,
            token="SLACK_APP_TOKEN",
            hint="set it to an app-level token (xapp-…) with the connections:write scope, "
            "from the app's Basic Information page, and turn Socket Mode on",
        ) from None
    url = response.get("url")
    if not isinstance(url, str) or not url:
        raise StartupError(
            f"SLACK_API_URL {settings.slack_api_url} gave no Socket Mode address "
            "(apps.connections.open answered without a url)"
        )
    return url


def _slack_error(exc: Exception, settings: Settings, *, token: str, hint: str) -> StartupError:
    url = settings.slack_api_url
    if isinstance(exc, SlackApiError):
        data = exc.response.data if exc.response is not None else None
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(data, dict) and data.get("ok") is False and isinstance(error, str) and error:
            return StartupError(f"Slack rejected {token} ({error}): {hint}")
        status = exc.response.status_code if exc.response is not None else "?"
        return StartupError(
            f"SLACK_API_URL {url} does not look like Slack's Web API (HTTP {status})"
        )
    if isinstance(exc, ValueError):
        return StartupError(
            f"SLACK_API_URL {url} does not look like Slack's Web API (the answer is not JSON)"
        )
    detail = "connection refused" if connection_refused(exc) else type(exc).__name__
    if isinstance(exc, TimeoutError):
        detail = f"no answer within {SLACK_TIMEOUT_S} s"
    return StartupError(f"cannot reach Slack at SLACK_API_URL {url} ({detail})")
