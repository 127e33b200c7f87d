"""`GET /healthz`, one handler on every port it is served on: PORT beside /slack/events,
HEALTH_PORT in Socket Mode, METRICS_PORT. A monitor gets the same answer on each."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.app import build_web_app
from bot.health import health_app
from bot.metrics_server import metrics_app
from bot.settings import Settings
from bot.store.db import create_engine, migrate

SETTINGS = Settings(
    slack_bot_token="xoxb-test",
    slack_signing_secret="secret",
    openai_api_key="sk-test",
    assistant_api="chat",
)


def events_site(engine: AsyncEngine) -> web.Application:
    async def authorize(**_: object) -> AuthorizeResult:
        return AuthorizeResult(enterprise_id=None, team_id="T1", bot_token="xoxb-test")

    bolt = AsyncApp(signing_secret="secret", authorize=authorize)
    return build_web_app(bolt=bolt, settings=SETTINGS, engine=engine)


SITES: dict[str, Callable[[AsyncEngine], web.Application]] = {
    "PORT": events_site,
    "HEALTH_PORT": health_app,
    "METRICS_PORT": metrics_app,
}


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/bot.db")
    await migrate(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
async def gone() -> AsyncIterator[AsyncEngine]:
    """A database server that refuses connections (nothing listens on port 1). A SQLite file
    that cannot be opened would do too, but aiosqlite's worker thread may then outlive the
    test's event loop."""
    engine = create_engine("postgresql+asyncpg://bot@127.0.0.1:1/bot")
    yield engine
    await engine.dispose()


async def healthz(site: web.Application) -> tuple[int, object]:
    async with TestClient(TestServer(site)) as client:
        response = await client.get("/healthz")
        return response.status, await response.json()


@pytest.mark.parametrize("port", SITES)
async def test_healthz_is_ok_while_the_database_answers(port: str, database: AsyncEngine) -> None:
    assert await healthz(SITES[port](database)) == (200, {"ok": True, "database": "ok"})


@pytest.mark.parametrize("port", SITES)
async def test_healthz_is_503_when_the_database_does_not(port: str, gone: AsyncEngine) -> None:
    assert await healthz(SITES[port](gone)) == (
        503,
        {"ok": False, "database": "unreachable"},
    )


async def test_healthz_answers_503_at_once_while_answer_work_holds_every_connection(
    database: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Answer work may queue 30 s for a pooled connection; a monitor's probe may not: it
    is told the database does not answer after HEALTH_CHECK_TIMEOUT_S."""
    monkeypatch.setattr("bot.store.db.HEALTH_CHECK_TIMEOUT_S", 0.2)
    async with database.connect() as held:  # SQLite's one answer-work connection, taken
        await held.exec_driver_sql("SELECT 1")
        assert await asyncio.wait_for(healthz(health_app(database)), timeout=10) == (
            503,
            {"ok": False, "database": "unreachable"},
        )
    assert await healthz(health_app(database)) == (200, {"ok": True, "database": "ok"})
