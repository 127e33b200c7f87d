"""Start-up and shutdown of one bot process."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.app import build_bolt_app, build_web_app
from bot.assistants import make_backend
from bot.conversation import ConversationService
from bot.settings import Settings
from bot.slack_api import SlackGateway, make_web_client
from bot.store.db import create_engine, migrate
from bot.store.repository import Store

log = logging.getLogger("bot")


class StartupError(Exception):
    """The bot cannot start; the message is one line saying what to fix."""


@dataclass
class Bot:
    settings: Settings
    engine: AsyncEngine
    service: ConversationService
    bolt: AsyncApp


async def serve(settings: Settings, *, stop_signals: Sequence[signal.Signals] = ()) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in stop_signals:
        loop.add_signal_handler(sig, stop.set)
    async with running_bot(settings) as bot:
        dispatcher = asyncio.create_task(bot.service.run())
        async with _intake(bot):
            await stop.wait()
            log.info("stopping: no new work is taken; finishing what is in hand")
        await bot.service.shutdown()
        dispatcher.cancel()
        await asyncio.gather(dispatcher, return_exceptions=True)
    log.info("stopped")


@asynccontextmanager
async def running_bot(settings: Settings) -> AsyncIterator[Bot]:
    engine = await _open_database(settings)
    client = make_web_client(token=settings.slack_bot_token, base_url=settings.slack_api_url)
    try:
        identity = await _check_slack(client, settings)
        backend = make_backend(settings, engine)
        service = ConversationService(
            store=Store(engine),
            backend=backend,
            slack=SlackGateway(client, bot_user_id=str(identity.bot_user_id)),
            settings=settings,
        )
        try:
            bolt = build_bolt_app(
                settings=settings, client=client, service=service, identity=identity
            )
            yield Bot(settings=settings, engine=engine, service=service, bolt=bolt)
        finally:
            await backend.close()
    finally:
        await engine.dispose()


@asynccontextmanager
async def _intake(bot: Bot) -> AsyncIterator[None]:
    """Take Slack events (HTTP or Socket Mode) for as long as the block runs."""
    settings = bot.settings
    if settings.slack_app_token:
        handler = AsyncSocketModeHandler(bot.bolt, settings.slack_app_token)
        await handler.connect_async()  # type: ignore[no-untyped-call]
        log.info("ready: Socket Mode connected (%s assistant API)", settings.assistant_api)
        try:
            yield
        finally:
            await handler.close_async()  # type: ignore[no-untyped-call]
        return
    runner = web.AppRunner(
        build_web_app(bolt=bot.bolt, settings=settings, engine=bot.engine),
        shutdown_timeout=5.0,
        access_log=None,
    )
    await runner.setup()
    site = web.TCPSite(runner, host="0.0.0.0", port=settings.port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise StartupError(f"cannot listen on PORT {settings.port}: {exc.strerror}") from None
    log.info(
        "ready: listening on port %s, POST /slack/events (%s assistant API)",
        settings.port,
        settings.assistant_api,
    )
    try:
        yield
    finally:
        await runner.cleanup()


async def _open_database(settings: Settings) -> AsyncEngine:
    engine = create_engine(settings.database_url)
    try:
        await migrate(engine)
    except (OSError, SQLAlchemyError) as exc:
        await engine.dispose()
        reason = getattr(exc, "orig", None) or exc
        raise StartupError(
            f"cannot open the database in DATABASE_URL ({type(reason).__name__}: "
            f"{str(reason).splitlines()[0][:160]})"
        ) from None
    return engine


async def _check_slack(client: AsyncWebClient, settings: Settings) -> AuthorizeResult:
    """Who the bot is (`auth.test`), which also proves the token works."""
    try:
        response = await client.auth_test()
    except SlackApiError as exc:
        raise StartupError(
            f"Slack rejected SLACK_BOT_TOKEN ({exc.response.get('error')}): "
            "set it to the Bot User OAuth Token of your installed app"
        ) from None
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise StartupError(
            f"cannot reach Slack at SLACK_API_URL {settings.slack_api_url} ({type(exc).__name__})"
        ) from None
    return AuthorizeResult.from_auth_test_response(
        bot_token=settings.slack_bot_token, auth_test_response=response
    )
