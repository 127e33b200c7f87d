"""`GET /healthz`: 200 while the database answers, 503 while it does not.

One handler, served wherever a monitor may look: on PORT beside `/slack/events` (HTTP mode),
on HEALTH_PORT (Socket Mode) and on METRICS_PORT. `python -m bot.healthcheck` asks it.
"""

from __future__ import annotations

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.store.db import database_answers


def healthz_route(engine: AsyncEngine) -> web.RouteDef:
    async def healthz(_: web.Request) -> web.Response:
        if not await database_answers(engine):  # an outage is logged once, not per check
            return web.json_response({"ok": False, "database": "unreachable"}, status=503)
        return web.json_response({"ok": True, "database": "ok"})

    return web.get("/healthz", healthz)


def health_app(engine: AsyncEngine, *routes: web.RouteDef) -> web.Application:
    """A site of its own: `/healthz` and `routes` (HEALTH_PORT, METRICS_PORT)."""
    app = web.Application()
    app.add_routes([healthz_route(engine), *routes])
    return app
