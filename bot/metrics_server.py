"""The site on METRICS_PORT: `/metrics` (the registry of `bot.metrics`, with the gauges that
are measured at scrape time) and `/healthz`."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.health import health_app
from bot.metrics import LOOP_LAG, REGISTRY, WAITING
from bot.store.models import Conversation


async def scrape(engine: AsyncEngine) -> bytes:
    """The exposition text, with the gauges that are measured at scrape time brought up to date."""
    loop = asyncio.get_running_loop()
    before = loop.time()
    await asyncio.sleep(0)
    LOOP_LAG.set(loop.time() - before)
    try:
        async with engine.connect() as connection:
            waiting = await connection.scalar(
                select(func.count())
                .select_from(Conversation)
                .where(Conversation.needs_attention.is_(True))
            )
        WAITING.set(int(waiting or 0))
    except Exception:  # the database being down shows in /healthz; keep serving the rest
        pass
    return generate_latest(REGISTRY)


def route(engine: AsyncEngine) -> web.RouteDef:
    async def serve_metrics(_: web.Request) -> web.Response:
        body = await scrape(engine)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return web.get("/metrics", serve_metrics)


def metrics_app(engine: AsyncEngine) -> web.Application:
    """The site on METRICS_PORT (HTTP and Socket Mode alike): /metrics, and /healthz for a
    monitor that may reach only this port."""
    return health_app(engine, route(engine))
