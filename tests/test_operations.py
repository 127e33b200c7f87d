"""What an operator relies on: every setting documented, durable SQLite, a bounded pool,
database outages told once, benchmark results that a quick run leaves alone."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from sqlalchemy import exc, text

from bench.run import parse_options, result_paths
from bot.settings import load_settings
from bot.store.db import DatabaseHealth, create_engine, create_intake_engine, is_database_outage

ROOT = Path(__file__).resolve().parent.parent


class RecordingEnv(dict[str, str]):
    """An environment that remembers every name the settings parser asks for."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.asked: set[str] = set()

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.asked.add(key)
        return super().__contains__(key)


def settings_read() -> set[str]:
    """Every environment variable `load_settings` reads, found by asking it."""
    env = RecordingEnv(
        {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "OPENAI_API_KEY": "k"}
    )
    load_settings(env, dotenv_path=None)
    return env.asked


def test_every_setting_is_in_env_example_and_the_configuration_reference() -> None:
    names = settings_read()
    assert {"SLACK_BOT_TOKEN", "PORT", "DB_POOL_SIZE", "HEALTH_PORT"} <= names
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    documented = set(re.findall(r"^(?:# )?([A-Z][A-Z0-9_]*)=", example, flags=re.MULTILINE))
    assert sorted(names - documented) == []
    assert sorted(documented - names) == [], "documented but never read"
    reference = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert sorted(n for n in names if f"`{n}`" not in reference) == []


def test_env_example_as_a_dot_env_gives_working_settings() -> None:
    """Copying .env.example to .env and filling in the secrets is a valid configuration."""
    env: dict[str, str] = {}
    for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name] = value
    settings = load_settings(env, dotenv_path=None)
    assert settings.socket_mode is False and settings.db_pool_size == 20


async def test_sqlite_commits_are_durable(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/d.db")
    try:
        async with engine.connect() as connection:
            synchronous = await connection.scalar(text("PRAGMA synchronous"))
            journal = await connection.scalar(text("PRAGMA journal_mode"))
    finally:
        await engine.dispose()
    assert (synchronous, journal) == (2, "wal"), "2 is FULL: a commit survives a power cut"


def test_postgres_pools_answer_work_queues_and_an_ack_never_waits_past_slacks_3_s() -> None:
    """Answer work (sized by DB_POOL_SIZE) queues for a connection in a burst rather than
    failing a step; intake's own pool gives up within Slack's 3 s, so Slack redelivers."""
    engine = create_engine("postgresql+asyncpg://u@127.0.0.1:1/d", pool_size=7)
    pool = engine.sync_engine.pool
    assert pool.size() == 7  # type: ignore[attr-defined]
    assert pool._max_overflow == 3  # type: ignore[attr-defined]
    assert pool._timeout >= 10.0  # type: ignore[attr-defined]
    intake = create_intake_engine("postgresql+asyncpg://u@127.0.0.1:1/d", beside=engine)
    assert intake.sync_engine.pool._timeout <= 2.0  # type: ignore[attr-defined]
    default = create_engine("postgresql+asyncpg://u@127.0.0.1:1/d").sync_engine.pool
    assert default.size() == 20  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("error", "outage"),
    [
        (exc.OperationalError("SELECT 1", {}, Exception("server closed")), True),
        (exc.InterfaceError("SELECT 1", {}, Exception("connection is closed")), True),
        (exc.TimeoutError("QueuePool limit reached"), True),
        (exc.IntegrityError("INSERT", {}, Exception("FOREIGN KEY constraint failed")), False),
        (ValueError("a bug"), False),
        (ConnectionRefusedError(111, "refused, raised outside database code"), False),
    ],
)
def test_what_counts_as_a_database_outage(error: BaseException, outage: bool) -> None:
    assert is_database_outage(error) is outage


def test_an_outage_is_one_warning_and_its_end_one_info(caplog: pytest.LogCaptureFixture) -> None:
    health = DatabaseHealth()
    error = exc.OperationalError("SELECT 1", {}, Exception("connection refused"))
    with caplog.at_level(logging.INFO, logger="bot.store.db"):
        for _ in range(50):
            health.failed(error, where="ack")
        assert not health.up
        for _ in range(5):
            health.answered()
        health.failed(error, where="ack")
    levels = [(r.levelname, r.getMessage().split(" (")[0]) for r in caplog.records]
    assert levels == [
        ("WARNING", "database unreachable"),
        ("INFO", "database reachable again after 0.0 s"),
        ("WARNING", "database unreachable"),
    ]


@pytest.mark.parametrize(
    ("error", "first", "last"),
    [
        (
            exc.OperationalError("SELECT 1", {}, Exception("connection refused")),
            "database unreachable",
            "database reachable again after 0.0 s",
        ),
        (
            exc.TimeoutError("QueuePool limit of size 2 overflow 2 reached, timed out"),
            "database busy: every pooled connection stayed in use",
            "database connections free again after 0.0 s",
        ),
    ],
)
def test_the_log_says_whether_the_database_is_away_or_only_busy(
    caplog: pytest.LogCaptureFixture, error: BaseException, first: str, last: str
) -> None:
    """A pool that timed out under load is not a database that went away: the operator is
    pointed at connections and load, not at the network."""
    health = DatabaseHealth()
    with caplog.at_level(logging.INFO, logger="bot.store.db"):
        health.failed(error, where="ack")
        health.failed(error, where="scan")
        health.answered()
    lines = [(r.levelname, r.getMessage().split(" (")[0]) for r in caplog.records]
    assert lines == [("WARNING", first), ("INFO", last)]


def test_non_outage_errors_keep_their_traceback(caplog: pytest.LogCaptureFixture) -> None:
    health = DatabaseHealth()
    logger = logging.getLogger("test.ops")
    try:
        raise ValueError("a bug")
    except ValueError as error:
        with caplog.at_level(logging.INFO):
            health.report(logger, error, "scan failed")
    (record,) = caplog.records
    assert record.levelname == "ERROR" and record.exc_info is not None
    assert health.up


@pytest.mark.parametrize(
    ("argv", "report", "chart", "rates"),
    [
        ([], "latest.md", "latency.png", "ack-rates.png"),
        (["--quick"], "quick.md", "quick-latency.png", "quick-ack-rates.png"),
        (["--workload", "burst"], "burst.md", "burst-latency.png", "burst-ack-rates.png"),
    ],
)
def test_a_quick_bench_run_leaves_the_committed_results_alone(
    argv: list[str], report: str, chart: str, rates: str
) -> None:
    paths = result_paths(parse_options(argv))
    assert [p.name for p in paths] == [report, chart, rates]
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8")
    quick = argv == ["--quick"]
    assert all((f"bench/results/{p.name}" in ignored) is quick for p in paths)
