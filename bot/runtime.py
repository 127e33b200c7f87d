"""Start and stop of one bot process: checks, then what bot.bootstrap builds, served over
HTTP or Socket Mode until a stop signal, then a graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

from bot.app import build_web_app
from bot.bootstrap import Bot, running_bot
from bot.conversation import ConversationService
from bot.health import health_app
from bot.metrics_server import metrics_app
from bot.preflight import StartupError, check_openai, check_ports, open_socket_url
from bot.settings import Settings
from bot.webhooks import unused_secret

log = logging.getLogger("bot")

SOCKET_CLOSE_TIMEOUT_S = 5.0


async def serve(
    settings: Settings,
    *,
    stop_signals: Sequence[signal.Signals] = (),
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Run the bot until a stop signal; `StartupError` if it cannot start.

    The signal handlers are installed before anything is awaited, so a stop signal works in
    every state: during start-up (a slow database, Slack or OpenAI) it abandons the start at
    once; once running it stops intake and lets answers finish for SHUTDOWN_GRACE_S; a second
    signal while that runs ends the answers in hand with a note the next start replaces, and
    a third abandons everything at once. `on_ready` is called once the bot is ready.
    """
    life = _Lifecycle(on_ready=on_ready)
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
    service: ConversationService | None = None
    on_ready: Callable[[], None] | None = None


def _stopped_early(life: _Lifecycle) -> str:
    """The last line of a start or a stop cut short: true about what was left."""
    if not life.ready.is_set():
        return "stopped during start-up; nothing had been taken in hand"
    if life.service is not None and life.service.in_hand:
        return "stopped before finishing what was in hand; the next start resumes it"
    return "stopped"


async def _run(settings: Settings, life: _Lifecycle) -> None:
    check_ports(settings)
    await check_openai(settings)
    if (unused := unused_secret(settings)) is not None:
        log.warning("OPENAI_WEBHOOK_SECRET is set but not used: %s; polling as usual", unused)
    async with running_bot(settings) as bot:
        life.service = bot.service
        dispatcher = asyncio.create_task(bot.service.run())
        try:
            async with _intake(bot):
                life.ready.set()
                if life.on_ready is not None:
                    life.on_ready()
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
async def _intake(bot: Bot) -> AsyncIterator[None]:
    """Take Slack events (HTTP or Socket Mode) for as long as the block runs."""
    settings = bot.settings
    async with _metrics_server(bot):  # bound before `ready`, in both modes
        if settings.slack_app_token:
            async with _socket_mode(bot, settings.slack_app_token):
                yield
            return
        web_app = build_web_app(
            bolt=bot.bolt, settings=settings, engine=bot.engine, wakeups=bot.wakeups
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
    url = await open_socket_url(bot.bolt.client, settings, app_token)
    handler = AsyncSocketModeHandler(bot.bolt, app_token)
    handler.client.wss_uri = url
    try:
        await handler.connect_async()  # type: ignore[no-untyped-call]
        health = health_app(bot.engine)
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


@asynccontextmanager
async def _metrics_server(bot: Bot) -> AsyncIterator[None]:
    """GET /metrics and /healthz on METRICS_PORT alone (token, cost and error
    figures are not for whoever reaches PORT); no METRICS_PORT, no metrics endpoint."""
    port = bot.settings.metrics_port
    if port is None:
        yield
        return
    async with _http_server(metrics_app(bot.engine), port, setting="METRICS_PORT"):
        log.info("metrics: GET /metrics and /healthz on port %s", port)
        yield
