"""Shared fixtures: fresh databases (SQLite and the local PostgreSQL), the fakes, the bot."""

from __future__ import annotations

import os
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager

import pytest

from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.slack import FakeSlack
from tests.harness import BotUnderTest, SlackMode, bot_env

POSTGRES_ADMIN_DSN = os.environ.get(
    "TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)


def _postgres_unavailable_reason() -> str | None:
    import asyncio

    import asyncpg

    async def probe() -> None:
        connection = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=3)
        await connection.close()

    try:
        asyncio.run(probe())
    except Exception as exc:
        return (
            f"no PostgreSQL at {POSTGRES_ADMIN_DSN} ({type(exc).__name__}); set TEST_POSTGRES_DSN"
        )
    return None


_PG_REASON: str | None = None
_PG_PROBED = False


def postgres_reason() -> str | None:
    global _PG_REASON, _PG_PROBED
    if not _PG_PROBED:
        _PG_REASON = _postgres_unavailable_reason()
        _PG_PROBED = True
    return _PG_REASON


def require_postgres() -> None:
    reason = postgres_reason()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the PostgreSQL tests, but {reason}")
    pytest.skip(reason)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A brand-new PostgreSQL database for one test, dropped afterwards."""
    require_postgres()
    import asyncio

    import asyncpg

    name = f"bot_test_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        connection = await asyncpg.connect(POSTGRES_ADMIN_DSN)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    base = POSTGRES_ADMIN_DSN.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: object) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/bot.db"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack()
    await fake.start()
    fake.add_user("UALICE", display_name="Alice")
    fake.add_user("UBOB", display_name="Bob")
    yield fake
    await fake.stop()


@pytest.fixture
async def openai_fake() -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture(params=["threads", "responses", "chat"])
def assistant_api(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["poll", "stream"])
def delivery(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def slack_mode(request: pytest.FixtureRequest) -> SlackMode:
    """Single-token mode, unless the test is marked `both_slack_modes` (then OAuth, and an
    org-wide Enterprise Grid install, too)."""
    return SlackMode(getattr(request, "param", SlackMode.TOKEN))


BOTH_SLACK_MODES = "both_slack_modes"
OAUTH_VARIANTS = {
    SlackMode.OAUTH: {"database_url": "sqlite", "assistant_api": "responses"},
    SlackMode.ORG: {"database_url": "sqlite", "assistant_api": "chat"},
}
"""Where a test of every mode runs in OAuth mode and as an org-wide install: one database and
one backend each (each delivery), the two modes on different backends; a test that does not
run on the one named here runs on the first of its own. Which token answers is decided
before either plays a part, and the installation store's own tests (tests/test_installs.py)
run on both databases."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{BOTH_SLACK_MODES}: run with the bot in single-token mode, in OAuth mode "
        "(installed through its install pages first) and installed org-wide (Enterprise Grid)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "slack_mode" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
        BOTH_SLACK_MODES
    ):
        metafunc.parametrize("slack_mode", list(SlackMode), indirect=True, ids=str)


def _params(item: pytest.Item) -> dict[str, object]:
    return dict(getattr(getattr(item, "callspec", None), "params", {}))


def _beyond_oauth_variants(items: list[pytest.Item]) -> set[str]:
    """The OAuth and org-wide items left out: each test keeps, per mode, one database and
    one backend (`OAUTH_VARIANTS`, else the first the test runs on)."""
    groups: dict[tuple[str, SlackMode], list[pytest.Item]] = defaultdict(list)
    for item in items:
        mode = SlackMode(str(_params(item).get("slack_mode", SlackMode.TOKEN)))
        if mode.oauth:
            groups[(item.nodeid.partition("[")[0], mode)].append(item)
    dropped: set[str] = set()
    for (_, mode), group in groups.items():
        for name, preferred in OAUTH_VARIANTS[mode].items():
            values = [_params(i).get(name) for i in group if i.nodeid not in dropped]
            chosen = preferred if preferred in values else (values[0] if values else None)
            dropped.update(i.nodeid for i in group if _params(i).get(name, chosen) != chosen)
    return dropped


def _unwanted(params: dict[str, object], module: str) -> bool:
    """Variants left out of the matrix (see `pytest_collection_modifyitems`)."""
    streamed = params.get("delivery") == "stream"
    wanted = module.endswith(
        ("test_conversation", "test_tools", "test_turn_usage", "test_approval_expiry")
    )
    return streamed and (params.get("database_url") == "postgres" or not wanted)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Streamed delivery runs the conversation suite on SQLite only, and OAuth mode one
    database and one backend.

    The database plays no part in how a reply is delivered, and intake, retention and backend
    settings do not depend on the delivery mode; the full matrix would double the suite's
    time for no new coverage.
    """
    kept, dropped = [], []
    beyond = _beyond_oauth_variants(items)
    for item in items:
        module = getattr(item, "module", None)
        if item.nodeid in beyond or _unwanted(
            _params(item), module.__name__ if module is not None else ""
        ):
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


BotFactory = Callable[..., AbstractAsyncContextManager[BotUnderTest]]


@pytest.fixture
def make_bot(
    slack: FakeSlack,
    openai_fake: FakeOpenAI,
    database_url: str,
    assistant_api: str,
    delivery: str,
    slack_mode: SlackMode,
) -> BotFactory:
    """Start the real bot with extra settings: `async with make_bot(ANSWER_DEADLINE_S="1")`.

    In OAuth mode the first bot started is installed in the fake's workspace through its
    install pages; a bot started again on the same database (a restart) is not: it must
    find the installation where the first one stored it.
    """
    started = 0

    def start(**settings: str) -> AbstractAsyncContextManager[BotUnderTest]:
        nonlocal started
        started += 1
        env = bot_env(
            slack=slack,
            openai=openai_fake,
            database_url=database_url,
            assistant_api=assistant_api,
            slack_mode=slack_mode,
            **{"DELIVERY": delivery, **settings},
        )
        install_first = slack_mode.oauth and started == 1
        return BotUnderTest.running(
            env,
            slack=slack,
            openai=openai_fake,
            install_first=install_first,
            slack_mode=slack_mode,
        )

    return start


@pytest.fixture
async def bot(make_bot: BotFactory) -> AsyncIterator[BotUnderTest]:
    """The real bot (HTTP mode) in this process, on both backends and both databases."""
    async with make_bot() as running:
        yield running
