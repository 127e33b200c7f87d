"""The test rig: in-process fakes, a fresh database and one real bot process against them.

All timestamps are `time.monotonic()` of this process. The fakes record when a request
*arrived* (`SlackCall.at`, `FakeRequest.at`) and when a run *became* completed
(`FakeOpenAI.completed_at`), so they compare directly with the load generator's own times.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import re
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg  # type: ignore[import-untyped]

from bot.live import THINKING_TEXT
from tests.fakes.events import event_envelope, mention, signed_headers
from tests.fakes.openai_api import FakeOpenAI, new_webhook_secret
from tests.fakes.slack import FakeSlack, SlackCall
from tests.harness import SIGNING_SECRET, BotProcess, bot_env, free_port

POSTGRES_ADMIN_DSN = os.environ.get(
    "BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
TOKEN_RE = re.compile(r"\bq[0-9a-f]{12}\b")
MESSAGE_METHODS = frozenset({"chat.postMessage", "chat.update"})
STREAM_METHODS = frozenset({"chat.startStream", "chat.appendStream", "chat.stopStream"})
USERS = tuple(f"U{index:04d}" for index in range(1, 21))
"""Askers, in turn: the bot looks each one up once (users.info), then uses its cache."""
TEST_ONLY_ENV = ("POLL_INITIAL_MS", "POLL_MAX_MS", "LEASE_S", "OPENAI_MAX_RETRIES")
"""Settings `tests.harness.bot_env` tunes for fast tests; dropped so the bot's defaults apply."""


@dataclass(frozen=True)
class Config:
    """One bot configuration of the matrix."""

    backend: str
    database: str
    delivery: str
    webhooks: bool = False
    """OPENAI_WEBHOOK_SECRET set and the fake OpenAI calling POST /openai/webhook (issue 12)."""
    processes: int = 1
    """Bot processes sharing the database, each on its own PORT; events go round-robin."""

    @property
    def label(self) -> str:
        hooked = "+webhooks" if self.webhooks else ""
        several = f"×{self.processes}" if self.processes > 1 else ""
        return f"{self.backend}·{self.database}·{self.delivery}{hooked}{several}"


@dataclass(frozen=True)
class FakeOptions:
    """How the fakes behave; the fake model's time is set per phase."""

    slack_latency_s: float = 0.0
    openai_latency_s: float = 0.0
    queue_s: float = 0.0
    fast_model_s: float = 0.05
    """Model time for warm-up and ack phases."""
    seed: int = 1
    webhook_delay_s: float = 0.02
    """Fake OpenAI: from a background response's end to its webhook (webhook configurations)."""


class BenchOpenAI(FakeOpenAI):
    """FakeOpenAI whose model time is drawn uniformly from `model_s` for each run.

    A fixed model time would phase-lock with the bot's poll intervals (every answer would
    wait exactly as long); a random one samples the whole poll cycle.
    """

    def __init__(self, *, model_s: tuple[float, float], seed: int, **kwargs: Any) -> None:
        self._random = random.Random(seed)
        self.model_s = model_s
        super().__init__(run_s=model_s[0], **kwargs)

    @property
    def run_s(self) -> float:
        low, high = self.model_s
        return low if low >= high else self._random.uniform(low, high)

    @run_s.setter
    def run_s(self, value: float) -> None:
        self.model_s = (value, value)


def token_reply(user_texts: list[str]) -> str:
    """The fake model's answer names the question's token, so answers map to questions."""
    found = TOKEN_RE.search(user_texts[-1] if user_texts else "")
    return f"Answer to {found.group(0)}." if found else "Echo: " + (user_texts or [""])[-1]


async def start_fakes(
    fakes: FakeOptions, model_s: tuple[float, float]
) -> tuple[FakeSlack, BenchOpenAI]:
    slack = FakeSlack(latency_s=fakes.slack_latency_s)
    for index, user in enumerate(USERS):
        slack.add_user(user, display_name=f"user{index + 1}", real_name=f"User {index + 1}")
    openai = BenchOpenAI(
        model_s=model_s, seed=fakes.seed, queue_s=fakes.queue_s, latency_s=fakes.openai_latency_s
    )
    openai.reply = token_reply
    await slack.start()
    await openai.start()
    return slack, openai


async def _postgres_admin(sql: str) -> None:
    connection = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def postgres_activity(database_url: str) -> dict[str, int]:
    """Sessions opened and transactions in the database so far (pg_stat_database)."""
    connection = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=5)
    try:
        row = await connection.fetchrow(
            "SELECT sessions, xact_commit, xact_rollback FROM pg_stat_database WHERE datname = $1",
            database_url.rsplit("/", 1)[1],
        )
    finally:
        await connection.close()
    return {key: int(value) for key, value in dict(row or {}).items()}


@contextlib.asynccontextmanager
async def fresh_database(kind: str) -> AsyncIterator[str]:
    """A DATABASE_URL of an empty database (SQLite file or `bench_<uuid>`), removed after."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="bench-") as directory:
            yield f"sqlite:///{directory}/bot.db"
        return
    name = f"bench_{uuid.uuid4().hex[:12]}"
    await _postgres_admin(f'CREATE DATABASE "{name}"')
    try:
        yield f"{POSTGRES_ADMIN_DSN.rsplit('/', 1)[0]}/{name}"
    finally:
        await _postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Question:
    """One prepared, signed mention event and what happened to it."""

    token: str
    channel: str
    body: bytes
    headers: dict[str, str]
    sent_at: float = math.nan
    acked_at: float = math.nan
    status: int = 0

    @property
    def ack_s(self) -> float:
        return self.acked_at - self.sent_at


@dataclass
class Seen:
    """What the asker of one question has seen in Slack, and when.

    `placeholder_at`: the first message the bot posts there ("Thinking…" or a stream start).
    `first_text_at`: the first piece of the answer (a streamed chunk, or the whole answer).
    `final_at`: the complete answer in place — the chat.update / chat.postMessage carrying
    it, or the chat.stopStream ending a stream that carried all of it.
    """

    expected: str
    streamed: str = ""
    placeholder_at: float | None = None
    first_text_at: float | None = None
    final_at: float | None = None

    def note(self, call: SlackCall) -> None:
        text = str(call.args.get("text") or call.args.get("markdown_text") or "")
        if self.placeholder_at is None:
            self.placeholder_at = call.at
        if call.method in STREAM_METHODS:
            self.streamed += text
            complete = call.method == "chat.stopStream" and self.expected in self.streamed
        else:
            complete = self.expected in text
        if text and text != THINKING_TEXT and self.first_text_at is None:
            self.first_text_at = call.at
        if complete and self.final_at is None:
            self.final_at = call.at


class AnswerTracker:
    """Reads FakeSlack.calls incrementally and keeps a `Seen` per question's channel."""

    def __init__(self, slack: FakeSlack) -> None:
        self._slack = slack
        self._cursor = 0
        self.seen: dict[str, Seen] = {}

    def expect(self, question: Question) -> None:
        self.seen[question.channel] = Seen(expected=f"Answer to {question.token}")

    def update(self) -> None:
        calls = self._slack.calls
        for call in calls[self._cursor :]:
            if call.method in MESSAGE_METHODS or call.method in STREAM_METHODS:
                seen = self.seen.get(str(call.args.get("channel", "")))
                if seen is not None:
                    seen.note(call)
        self._cursor = len(calls)

    def final_at(self, channel: str) -> float | None:
        return self.seen[channel].final_at

    def missing(self, channels: Sequence[str]) -> list[str]:
        self.update()
        return [channel for channel in channels if self.seen[channel].final_at is None]

    async def wait(self, channels: Sequence[str], timeout: float) -> list[str]:  # noqa: ASYNC109
        """Wait until every channel has its final answer; the channels still missing."""
        deadline = time.monotonic() + timeout
        missing = self.missing(channels)
        while missing and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            missing = self.missing(missing)
        return missing


class BenchBot(BotProcess):
    """`python -m bot` with its metrics on a port of their own, run from `source` (another
    commit's bot/, see bench.against) when given, else from this checkout."""

    def __init__(self, env: dict[str, str], *, source: Path | None = None) -> None:
        self.metrics_port = free_port()
        env = {**env, "METRICS_PORT": str(self.metrics_port)}
        if source is not None:
            env["PYTHONPATH"] = str(source)
        super().__init__(env, cwd=source)

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"


@dataclass
class Rig:
    """The fakes, the bot processes against them (`config.processes`, one database), and an
    HTTP client to send events: round-robin over the processes, as Slack spreads them."""

    config: Config
    fakes: FakeOptions
    slack: FakeSlack
    openai: BenchOpenAI
    bots: list[BenchBot]
    http: aiohttp.ClientSession
    tracker: AnswerTracker
    log_notes: list[str] = field(default_factory=list)
    db_activity: dict[str, int] = field(default_factory=dict)
    """PostgreSQL only: pg_stat_database counters over the bot processes' life."""
    _serial: int = 0
    _sent: int = 0

    @property
    def bot(self) -> BenchBot:
        """The first bot process (the only one unless `config.processes` > 1)."""
        return self.bots[0]

    @property
    def pids(self) -> list[int]:
        return [bot.process.pid for bot in self.bots if bot.process is not None]

    @property
    def answered(self) -> int:
        """Questions answered (final answer in Slack) over the bot process's life."""
        self.tracker.update()
        return sum(seen.final_at is not None for seen in self.tracker.seen.values())

    @property
    def pid(self) -> int:
        assert self.bot.process is not None
        return self.bot.process.pid

    def prepare(self, prefix: str, count: int) -> list[Question]:
        """Signed mention events, each a new top-level message in a channel of its own.

        Signed now (Slack's signature holds a timestamp), sent later without further work, so
        the load generator stays light.
        """
        questions = []
        for _ in range(count):
            self._serial += 1
            channel = f"C{prefix}{self._serial:06d}"
            token = "q" + uuid.uuid4().hex[:12]
            user = USERS[self._serial % len(USERS)]
            text = f"<@{self.slack.bot_user_id}> please answer {token}"
            message = self.slack.add_message(channel, user=user, text=text)
            event = mention(text=text, user=user, channel=channel, ts=message.ts)
            envelope = event_envelope(event, team_id=self.slack.team_id)
            body = json.dumps(envelope, separators=(",", ":")).encode()
            headers = signed_headers(body, signing_secret=SIGNING_SECRET)
            question = Question(token=token, channel=channel, body=body, headers=headers)
            self.tracker.expect(question)
            questions.append(question)
        return questions

    async def send(
        self,
        question: Question,
        http: aiohttp.ClientSession | None = None,
        give_up: aiohttp.ClientTimeout | None = None,
    ) -> None:
        """POST one event to the next bot process; records when the POST started and when
        its response was read (status -1: no response, or none within `give_up`)."""
        target = self.bots[self._sent % len(self.bots)]
        self._sent += 1
        question.sent_at = time.monotonic()
        try:
            async with (http or self.http).post(
                target.events_url, data=question.body, headers=question.headers, timeout=give_up
            ) as response:
                await response.read()
                question.status = response.status
        except (aiohttp.ClientError, TimeoutError):
            question.status = -1
        question.acked_at = time.monotonic()

    def use_model(self, model_s: tuple[float, float]) -> None:
        self.openai.model_s = model_s


def bot_environment(
    config: Config, slack: FakeSlack, openai: FakeOpenAI, database_url: str, extra: dict[str, str]
) -> dict[str, str]:
    """The harness's env for the fakes, minus its test-only tuning, plus `extra`."""
    env = bot_env(
        slack=slack, openai=openai, database_url=database_url, assistant_api=config.backend
    )
    for name in TEST_ONLY_ENV:
        env.pop(name, None)
    env["DELIVERY"] = config.delivery
    env.update(extra)
    return env


async def warm_up(rig: Rig) -> None:
    """One answered question first, so one-time costs (lazy imports, Bolt's first auth.test,
    first connections) are not measured as latency."""
    saved = rig.openai.model_s
    rig.use_model((rig.fakes.fast_model_s, rig.fakes.fast_model_s))
    for question in rig.prepare("W", len(rig.bots)):  # one to each process
        await rig.send(question)
        await rig.tracker.wait([question.channel], timeout=15)
    rig.use_model(saved)


@contextlib.asynccontextmanager
async def running_rig(
    config: Config,
    fakes: FakeOptions,
    *,
    model_s: tuple[float, float],
    extra_env: dict[str, str] | None = None,
    source: Path | None = None,
) -> AsyncIterator[Rig]:
    """Fresh fakes, a fresh database and fresh, warmed-up bot processes; all removed after.
    `source`: a directory holding another commit's bot/ to run instead of this checkout's."""
    slack, openai = await start_fakes(fakes, model_s)
    try:
        async with fresh_database(config.database) as database_url:
            env = bot_environment(config, slack, openai, database_url, extra_env or {})
            if config.webhooks:
                env["OPENAI_WEBHOOK_SECRET"] = openai.webhook_secret = new_webhook_secret()
                openai.webhook_delay_s = fakes.webhook_delay_s
            bots = [BenchBot(env, source=source) for _ in range(config.processes)]
            if config.webhooks:
                openai.webhook_url = f"http://127.0.0.1:{bots[0].port}/openai/webhook"
            for bot in bots:
                bot.start()
            connector = aiohttp.TCPConnector(limit=100)
            timeout = aiohttp.ClientTimeout(total=30)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
                rig = Rig(config, fakes, slack, openai, bots, http, AnswerTracker(slack))
                try:
                    for bot in bots:
                        await bot.wait_ready(timeout=30)
                    await warm_up(rig)
                    yield rig
                finally:
                    for bot in bots:
                        bot.stop()
                        rig.log_notes.extend(log_summary(bot.output()))
                        bot.log_path.unlink(missing_ok=True)
                    if config.database == "postgres":
                        await asyncio.sleep(0.5)  # the bot's server processes flush at exit
                        rig.db_activity = await postgres_activity(database_url)
    finally:
        await openai.stop()
        await slack.stop()


class Noise:
    """CPU the rest of the machine used meanwhile: everything but this process and the bot
    processes it started (reaped children), so PostgreSQL's server processes count here, as
    does anything else running on the machine; and CPU time stolen by the hypervisor."""

    def __init__(self) -> None:
        import psutil  # type: ignore[import-untyped]  # a bench extra: imported when used

        self._started = time.monotonic()
        self._system = psutil.cpu_times()
        self._ours = self._our_cpu()

    @staticmethod
    def _our_cpu() -> float:
        import psutil

        times = psutil.Process().cpu_times()
        return float(times.user + times.system + times.children_user + times.children_system)

    def cores(self) -> tuple[float, float]:
        """(other processes' CPU, stolen CPU) since creation, in cores."""
        import psutil

        now = psutil.cpu_times()
        elapsed = max(1e-9, time.monotonic() - self._started)
        total = sum(now) - sum(self._system)
        idle = (now.idle + now.iowait) - (self._system.idle + self._system.iowait)
        steal = getattr(now, "steal", 0.0) - getattr(self._system, "steal", 0.0)
        others = total - idle - steal - (self._our_cpu() - self._ours)
        return max(0.0, others) / elapsed, steal / elapsed


def log_summary(log: str, limit: int = 4) -> list[str]:
    """The bot's most frequent WARNING/ERROR log lines (numbers masked), with counts; a
    traceback by the exception it ends with."""
    counts: Counter[str] = Counter()
    in_traceback = False
    for line in log.splitlines():
        match = re.search(r" (WARNING|ERROR|CRITICAL) (.*)", line)
        if match:
            counts[re.sub(r"\d+", "N", f"{match.group(1)} {match.group(2)}")[:160]] += 1
        elif line.startswith("Traceback"):
            in_traceback = True
        elif in_traceback and line and not line[0].isspace():
            in_traceback = False
            counts[re.sub(r"\d+", "N", f"Traceback: {line}")[:160]] += 1
    return [f"{count}× {text}" for text, count in counts.most_common(limit)]
