"""Shared fixtures: fresh databases (SQLite and the local PostgreSQL), the fakes, the bot."""

from __future__ import annotations

import compileall
import itertools
import os
import re
import shutil
import sys
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.modes import SlackMode

if TYPE_CHECKING:  # imported where a test runs: the process handing tests out needs none
    from tests.fakes.openai_api import FakeOpenAI
    from tests.fakes.slack import FakeSlack
    from tests.harness import BotUnderTest

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


def _postgres_admin(*statements: str) -> list[list[tuple[object, ...]]]:
    """Run statements on the admin database (one connection), returning each one's rows."""
    import asyncio

    import asyncpg

    async def run() -> list[list[tuple[object, ...]]]:
        connection = await asyncpg.connect(POSTGRES_ADMIN_DSN)
        try:
            return [[tuple(row) for row in await connection.fetch(sql)] for sql in statements]
        finally:
            await connection.close()

    return asyncio.run(run())


def _postgres_database_url(name: str) -> str:
    return f"{POSTGRES_ADMIN_DSN.rsplit('/', 1)[0]}/{name}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A brand-new, empty PostgreSQL database for one test, dropped afterwards."""
    require_postgres()
    name = f"bot_test_{uuid.uuid4().hex[:12]}"
    _postgres_admin(f'CREATE DATABASE "{name}"')
    yield _postgres_database_url(name)
    _postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


_SCHEMA_FINGERPRINT = """
SELECT md5(string_agg(line, ';' ORDER BY line)) FROM (
    SELECT concat_ws(',', table_name, column_name, data_type, is_nullable, column_default) AS line
    FROM information_schema.columns WHERE table_schema = 'public'
    UNION ALL SELECT indexdef FROM pg_indexes WHERE schemaname = 'public'
    UNION ALL SELECT 'revision ' || version_num FROM alembic_version
) AS schema
"""


class _MigratedPostgres:
    """This worker's PostgreSQL databases at the schema head, each used by one test at a time.

    Creating a database and migrating it costs about a second of the server's and Alembic's
    time; a test that starts on a migrated database instead gets one that an earlier test
    used, emptied (every table but alembic_version truncated, identities restarted) after
    that test's connections were ended. A database whose schema a test changed (a revision
    set, a table altered) is dropped rather than reused. Tests of the migrations themselves
    ask for an empty database (`empty_database`)."""

    def __init__(self) -> None:
        self.free: list[str] = []
        self.all: list[str] = []
        self.fingerprint: str | None = None

    def take(self) -> str:
        if self.free:
            return self.free.pop()
        name = f"bot_test_{uuid.uuid4().hex[:12]}"
        _postgres_admin(f'CREATE DATABASE "{name}"')
        self.all.append(name)
        import asyncio

        from bot.settings import database_url as async_url
        from bot.store.db import create_engine, migrate

        async def prepare() -> str:
            engine = create_engine(async_url(_postgres_database_url(name)), pool_size=1)
            try:
                await migrate(engine)
                async with engine.connect() as connection:
                    return str((await connection.exec_driver_sql(_SCHEMA_FINGERPRINT)).scalar())
            finally:
                await engine.dispose()

        fingerprint = asyncio.run(prepare())
        if self.fingerprint is None:
            self.fingerprint = fingerprint
        return name

    def give_back(self, name: str) -> None:
        import asyncio

        import asyncpg

        async def empty() -> bool:
            admin = await asyncpg.connect(POSTGRES_ADMIN_DSN)
            try:
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = $1 AND pid <> pg_backend_pid()",
                    name,
                )
            finally:
                await admin.close()
            connection = await asyncpg.connect(_postgres_database_url(name))
            try:
                if await connection.fetchval(_SCHEMA_FINGERPRINT) != self.fingerprint:
                    return False
                await _empty_tables(connection)
                return True
            finally:
                await connection.close()

        if asyncio.run(empty()):
            self.free.append(name)
        else:
            self.drop(name)

    def drop(self, name: str) -> None:
        _postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.all.remove(name)

    def drop_all(self) -> None:
        for name in list(self.all):
            self.drop(name)


async def _empty_tables(connection: Any) -> None:
    """Every table but alembic_version emptied and its identities restarted: DELETE with
    foreign-key triggers off (a superuser's `session_replication_role`), about 6 ms, where
    TRUNCATE … RESTART IDENTITY of the 16 tables took about 65 ms of the server's time per
    test; a user that may not turn the triggers off gets the TRUNCATE."""
    tables = [
        str(row[0])
        for row in await connection.fetch(
            "SELECT quote_ident(tablename) FROM pg_tables "
            "WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        )
    ]
    sequences = [
        str(row[0])
        for row in await connection.fetch(
            "SELECT quote_ident(sequencename) FROM pg_sequences WHERE schemaname = 'public'"
        )
    ]
    import asyncpg

    try:
        await connection.execute("SET session_replication_role = replica")
    except asyncpg.InsufficientPrivilegeError:
        await connection.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
        return
    statements = [f"DELETE FROM {table}" for table in tables]
    statements += [f"ALTER SEQUENCE {sequence} RESTART" for sequence in sequences]
    await connection.execute("; ".join([*statements, "SET session_replication_role = DEFAULT"]))


@pytest.fixture(scope="session", autouse=True)
def _sql_compiled_once_per_worker() -> None:
    """tests/sql_cache.py, where tests run (not in the process handing them out)."""
    from tests.sql_cache import compile_once_per_worker

    compile_once_per_worker()


@pytest.fixture(scope="session")
def _migrated_postgres() -> Iterator[_MigratedPostgres]:
    databases = _MigratedPostgres()
    yield databases
    databases.drop_all()


@pytest.fixture(scope="session")
def _migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file at the schema head, which each test starts from a copy of."""
    import asyncio

    from bot.settings import database_url as async_url
    from bot.store.db import create_engine, migrate

    path = tmp_path_factory.mktemp("migrated") / "bot.db"

    async def prepare() -> None:
        engine = create_engine(async_url(f"sqlite:///{path}"))
        try:
            await migrate(engine)
        finally:
            await engine.dispose()

    asyncio.run(prepare())
    return path


EMPTY_DATABASE = "empty_database"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of the test's own, already at the schema head (migrating an empty database
    at every start is what tests/test_upgrades.py, test_maintenance.py and test_schema.py
    show), or empty for tests marked `empty_database`."""
    empty = request.node.get_closest_marker(EMPTY_DATABASE) is not None
    if request.param == "sqlite":
        if not empty:
            shutil.copyfile(request.getfixturevalue("_migrated_sqlite"), tmp_path / "bot.db")
        yield f"sqlite:///{tmp_path}/bot.db"
    elif empty:
        yield str(request.getfixturevalue("postgres_url"))
    else:
        require_postgres()
        databases: _MigratedPostgres = request.getfixturevalue("_migrated_postgres")
        name = databases.take()
        try:
            yield _postgres_database_url(name)
        finally:
            databases.give_back(name)


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    from tests.fakes.slack import FakeSlack

    fake = FakeSlack()
    await fake.start()
    fake.add_user("UALICE", display_name="Alice")
    fake.add_user("UBOB", display_name="Bob")
    yield fake
    await fake.stop()


@pytest.fixture
async def openai_fake() -> AsyncIterator[FakeOpenAI]:
    """The fake OpenAI, whose runs take 0.12 s unless a test sets longer ones: every answer
    of the suite waits for one (tests that need a run still going set `run_s`)."""
    from tests.fakes.openai_api import FakeOpenAI

    fake = FakeOpenAI(queue_s=0.02, run_s=0.1)
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
    if not hasattr(config, "workerinput"):  # once, in the process that starts the workers
        _compile_the_bot()
        _compile_the_tests(config)
    config.addinivalue_line(
        "markers",
        f"{EMPTY_DATABASE}: the `database_url` fixture gives an empty database, not one at the "
        "schema head",
    )
    config.addinivalue_line(
        "markers",
        f"{BOTH_SLACK_MODES}: run with the bot in single-token mode, in OAuth mode "
        "(installed through its install pages first) and installed org-wide (Enterprise Grid)",
    )


def _compile_the_bot() -> None:
    """`bot/` compiled once, for every process the tests start (each reads the cached
    bytecode): where PYTHONDONTWRITEBYTECODE=1 is set (as in CI's environment) each `python
    -m bot` and each test worker would otherwise compile it again, about 0.2 s of CPU apiece.
    The test modules' rewritten bytecode is cached too, for the same reason."""
    compileall.compile_dir(Path(__file__).parent.parent / "bot", quiet=1)


def _compile_the_tests(config: pytest.Config) -> None:
    """The tests' own modules compiled once before the workers start, for the same reason:
    the harness and fakes as Python caches them, the test modules as pytest's assertion
    rewriting caches them (its private helpers; where they are not there, each worker
    rewrites as before). In a fresh checkout the five workers otherwise each rewrote every
    test module at once: about 1.9 CPU-s apiece."""
    folder = Path(__file__).parent
    compileall.compile_dir(folder, quiet=1, rx=re.compile(r"(^|/)(test_[^/]*|conftest)\.py$"))
    try:
        from _pytest.assertion import rewrite
    except ImportError:
        return
    state = config.stash.get(getattr(rewrite, "assertstate_key", None), None)  # type: ignore[arg-type]
    parts = ("PYC_TAIL", "get_cache_dir", "_read_pyc", "_rewrite_test", "_write_pyc")
    if state is None or not all(hasattr(rewrite, part) for part in parts):
        return
    for module in [*folder.rglob("test_*.py"), *folder.rglob("conftest.py")]:
        cache = rewrite.get_cache_dir(module)
        pyc = cache / (module.name[:-3] + rewrite.PYC_TAIL)
        if rewrite._read_pyc(module, pyc, state.trace) is None:
            cache.mkdir(exist_ok=True)
            source_hash, code = rewrite._rewrite_test(module, config)
            rewrite._write_pyc(state, code, source_hash, pyc)


# Workers cache what pytest's assertion rewriting made of each test module (see above).
sys.dont_write_bytecode = False


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
    database and one backend; the slow tests are spread over the first half.

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
    items[:] = _slow_spread_over_the_first_half(kept)


def _slow_spread_over_the_first_half(items: list[pytest.Item]) -> list[pytest.Item]:
    """The tests that start real processes take longest and use the most CPU. Spread over the
    first half of the run, they leave no worker busy at the end while the others have nothing
    left, and they do not all start processes at once (a process starved of CPU misses the
    time limits some of them check)."""
    slow = [item for item in items if item.get_closest_marker("slow") is not None]
    fast = iter([item for item in items if item.get_closest_marker("slow") is None])
    between = (len(items) - len(slow)) // max(1, 2 * len(slow))
    ordered: list[pytest.Item] = []
    for item in slow:
        ordered.append(item)
        ordered.extend(itertools.islice(fast, between))
    ordered.extend(fast)
    return ordered


ON_SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
"""For a behaviour the database plays no part in (the same ORM statements on both): SQLite
only. Leases, exactly-once intake, takeovers, concurrency and migrations keep both."""
ON_ONE_BACKEND = pytest.mark.parametrize("assistant_api", ["responses"], indirect=True)
"""For a behaviour decided before or after the assistant backend plays its part (rendering,
splitting, intake, Slack's side): one backend."""
POLLED = pytest.mark.parametrize("delivery", ["poll"], indirect=True)
"""For a behaviour decided before the answer is delivered: the polled delivery only."""


BotFactory = Callable[..., AbstractAsyncContextManager["BotUnderTest"]]


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
    from tests.harness import BotUnderTest, bot_env

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
