"""The peer workload (issue 12): the bot beside a minimal baseline bot, in Socket Mode.

Both bots run as processes against fresh fakes: Socket Mode, a 1 s model streaming 3 deltas
(Responses API; the bot with its defaults: DELIVERY=stream, SQLite). Each, in turn:

1. starts, connects its socket, answers one warm-up question (fast model);
2. idles for `idle_s` with no traffic: CPU per idle second;
3. answers `sequential` mentions one after another (each waits for the previous answer);
4. answers `burst` mentions sent at the same moment: wall time until the last answer.

Measured per bot: CPU per answer (process user+system time, psutil, from the first send
until every answer is in Slack plus a 0.5 s tail for trailing calls), idle CPU per second,
peak RSS (sampled every 50 ms from the warm-up on), burst wall time, event → answer
(Socket Mode envelope sent → the Slack call that completes the answer), the socket ack, and
Web API / OpenAI calls per answer by method. Every figure is also given as a ratio to the
baseline, which absorbs much of a noisy machine's variation.

`profile_bot` runs a third bot process (the real one) under pyinstrument (bench/profiled_bot.py)
and profiles 10 s of idling and the burst: bench/results/profile-idle.txt and
profile-answers.txt. Profiling slows the process, so its figures are not used.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bench.phases import ResourceSampler, count_calls, percentile
from bench.rig import (
    TEST_ONLY_ENV,
    USERS,
    AnswerTracker,
    BenchOpenAI,
    FakeOptions,
    Question,
    start_fakes,
)
from tests.fakes.events import event_envelope, mention
from tests.fakes.slack import FakeSlack
from tests.harness import BotProcess, bot_env

PEER_MODEL_S = 1.0
PEER_DELTAS = 3
WARM_UP_MODEL_S = 0.05
TAIL_S = 0.5
"""After the last answer: trailing calls and writes still count towards CPU per answer."""

# Issue 12's targets, on this workload (and two from the ack/scale measurements).
CPU_PER_ANSWER_GOAL_S = 0.025
IDLE_CPU_GOAL_S_PER_S = 0.002
PEAK_RSS_GOAL_MIB = 85.0
BURST_WALL_GOAL_S = 1.6
SLACK_CALLS_AIM = 3.0
ACK_P99_GOAL_S = 0.100
LARGE_EXCESS_GOAL_S = 2.0


@dataclass(frozen=True)
class PeerOptions:
    sequential: int = 20
    burst: int = 30
    idle_s: float = 10.0
    profile: bool = False
    profile_dir: Path = Path("bench/results")


@dataclass
class PeerResult:
    """One bot's figures on the peer workload."""

    name: str
    idle_cpu_s_per_s: float = math.nan
    sequential_cpu_per_answer: float = math.nan
    burst_cpu_per_answer: float = math.nan
    peak_rss: int = 0
    burst_wall_s: float = math.nan
    sequential_latencies: list[float] = field(default_factory=list)
    burst_latencies: list[float] = field(default_factory=list)
    acks: list[float] = field(default_factory=list)
    answered: int = 0
    missing: int = 0
    calls: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    def calls_to(self, prefix: str) -> float:
        return sum(v for k, v in self.calls.items() if k.startswith(prefix))


@dataclass
class PeerResults:
    bot: PeerResult
    baseline: PeerResult
    profiles: list[Path] = field(default_factory=list)
    profile_error: str | None = None
    previous: PeerResult | None = None
    """`--against <ref>`: the bot at that commit, measured the same way in the same run."""
    sql_per_answer: tuple[float, float] | None = None
    """The profiled burst: (statements, commits) per answer."""


class ModuleProcess(BotProcess):
    """`python -m <module>` with the harness's environment and log file handling; from
    `source` (another commit's bot/, cwd and PYTHONPATH) when given."""

    def __init__(self, env: Mapping[str, str], module: str, source: Path | None = None) -> None:
        if source is not None:
            env = {**env, "PYTHONPATH": str(source)}
        super().__init__(env, cwd=source)
        self.module = module

    def start(self) -> None:
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module], env=self.env, cwd=self.cwd, stdout=log, stderr=log
        )

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)


def peer_env(slack: FakeSlack, openai: BenchOpenAI, database_url: str) -> dict[str, str]:
    """The bot's defaults in Socket Mode (Responses API, DELIVERY=stream), pointed at fakes."""
    env = bot_env(slack=slack, openai=openai, database_url=database_url, assistant_api="responses")
    for name in (*TEST_ONLY_ENV, "SLACK_SIGNING_SECRET"):
        env.pop(name, None)
    env["SLACK_APP_TOKEN"] = slack.app_token
    return env


class PeerRig:
    """Fresh fakes and one bot process (the bot, or the baseline) talking over the socket."""

    def __init__(self, slack: FakeSlack, openai: BenchOpenAI, process: ModuleProcess) -> None:
        self.slack = slack
        self.openai = openai
        self.process = process
        self.tracker = AnswerTracker(slack)
        self._serial = 0

    @property
    def pid(self) -> int:
        assert self.process.process is not None
        return self.process.process.pid

    def alive(self) -> bool:
        return self.process.process is not None and self.process.process.poll() is None

    async def wait_connected(self, timeout: float = 40.0) -> None:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while self.slack.socket_connections == 0:
            if not self.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"no Socket Mode connection:\n{self.process.output()[-2000:]}")
            await asyncio.sleep(0.05)

    async def ask(self, prefix: str) -> tuple[Question, float]:
        """One mention over the socket; (the question, when it was sent). Records the ack."""
        self._serial += 1
        channel = f"C{prefix}{self._serial:05d}"
        token = "q" + uuid.uuid4().hex[:12]
        user = USERS[self._serial % len(USERS)]
        text = f"<@{self.slack.bot_user_id}> please answer {token}"
        message = self.slack.add_message(channel, user=user, text=text)
        body = event_envelope(
            mention(text=text, user=user, channel=channel, ts=message.ts),
            team_id=self.slack.team_id,
        )
        question = Question(token=token, channel=channel, body=b"", headers={})
        self.tracker.expect(question)
        question.sent_at = time.monotonic()
        await self.slack.send_socket_event(body, ingest=False, timeout=30)
        question.acked_at = time.monotonic()
        return question, question.sent_at

    def latency(self, question: Question) -> float | None:
        final = self.tracker.final_at(question.channel)
        return None if final is None else final - question.sent_at


def process_cpu_s(pid: int) -> float:
    import psutil  # type: ignore[import-untyped]  # a bench extra

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


@contextlib.asynccontextmanager
async def peer_rig(
    module: str, extra_env: Mapping[str, str] | None = None, source: Path | None = None
) -> AsyncIterator[PeerRig]:
    slack, openai = await start_fakes(FakeOptions(queue_s=0.0), (PEER_MODEL_S, PEER_MODEL_S))
    openai.stream_chunks = PEER_DELTAS
    try:
        with tempfile.TemporaryDirectory(prefix="bench-peer-") as directory:
            env = peer_env(slack, openai, f"sqlite:///{directory}/bot.db")
            env.update(extra_env or {})
            process = ModuleProcess(env, module, source)
            process.start()
            rig = PeerRig(slack, openai, process)
            try:
                await rig.wait_connected()
                yield rig
            finally:
                await stop_process(process)
                process.log_path.unlink(missing_ok=True)
    finally:
        await openai.stop()
        await slack.stop()


async def stop_process(process: ModuleProcess, timeout: float = 20.0) -> None:  # noqa: ASYNC109
    """SIGTERM (so a profiled bot writes its files), then kill after `timeout`."""
    if process.process is None or process.process.poll() is not None:
        return
    process.signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while process.process.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    process.stop()


async def warm_up(rig: PeerRig) -> None:
    rig.openai.model_s = (WARM_UP_MODEL_S, WARM_UP_MODEL_S)
    question, _ = await rig.ask("W")
    missing = await rig.tracker.wait([question.channel], timeout=20)
    if missing:
        raise RuntimeError(f"warm-up not answered:\n{rig.process.output()[-2000:]}")
    rig.openai.model_s = (PEER_MODEL_S, PEER_MODEL_S)
    await asyncio.sleep(1.0)  # trailing work of the warm-up is over before anything is measured


async def measure(
    name: str, module: str, options: PeerOptions, source: Path | None = None
) -> PeerResult:
    result = PeerResult(name=name)
    try:
        async with peer_rig(module, source=source) as rig:
            sampler = ResourceSampler(rig.pid)
            with sampler:
                await warm_up(rig)
                before = process_cpu_s(rig.pid)
                await asyncio.sleep(options.idle_s)
                result.idle_cpu_s_per_s = (process_cpu_s(rig.pid) - before) / options.idle_s
                slack_from, openai_from = len(rig.slack.calls), len(rig.openai.requests)
                await sequential(rig, options.sequential, result)
                await burst(rig, options.burst, result)
            result.peak_rss = sampler.peak_rss
            result.calls = count_calls(
                rig.slack, rig.openai, slack_from, openai_from, result.answered
            )
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"[:600]
    return result


async def sequential(rig: PeerRig, count: int, result: PeerResult) -> None:
    before = process_cpu_s(rig.pid)
    answered = 0
    for _ in range(count):
        question, _ = await rig.ask("S")
        result.acks.append(question.ack_s)
        missing = await rig.tracker.wait([question.channel], timeout=PEER_MODEL_S + 15)
        latency = rig.latency(question)
        if missing or latency is None:
            result.missing += 1
            continue
        answered += 1
        result.sequential_latencies.append(latency)
    await asyncio.sleep(TAIL_S)
    result.sequential_cpu_per_answer = (process_cpu_s(rig.pid) - before) / max(1, answered)
    result.answered += answered


async def burst(rig: PeerRig, count: int, result: PeerResult) -> None:
    before = process_cpu_s(rig.pid)
    started = time.monotonic()
    sent = await asyncio.gather(*(rig.ask("B") for _ in range(count)))
    questions = [q for q, _ in sent]
    result.acks.extend(q.ack_s for q in questions)
    missing = await rig.tracker.wait([q.channel for q in questions], timeout=PEER_MODEL_S + 30)
    latencies = [lat for q in questions if (lat := rig.latency(q)) is not None]
    finals = [at for q in questions if (at := rig.tracker.final_at(q.channel)) is not None]
    await asyncio.sleep(TAIL_S)
    answered = len(latencies)
    result.burst_cpu_per_answer = (process_cpu_s(rig.pid) - before) / max(1, answered)
    result.burst_wall_s = max(finals) - started if finals and not missing else math.nan
    result.burst_latencies = latencies
    result.missing += len(missing)
    result.answered += answered


async def profile_bot(options: PeerOptions) -> list[Path]:
    """The real bot under pyinstrument: 10 s idle, then the burst; the profile files."""
    directory = options.profile_dir.resolve()
    names = ["idle", "answers"]
    paths = [directory / f"profile-{name}.txt" for name in names]
    for path in paths:
        path.unlink(missing_ok=True)
    env = {"BENCH_PROFILE_DIR": str(directory), "BENCH_PROFILE_NAMES": ",".join(names)}
    async with peer_rig("bench.profiled_bot", env) as rig:
        await warm_up(rig)
        rig.process.signal(signal.SIGUSR1)
        await asyncio.sleep(options.idle_s)
        rig.process.signal(signal.SIGUSR2)
        await wait_for_file(paths[0])
        rig.process.signal(signal.SIGUSR1)
        result = PeerResult(name="profiled")
        await burst(rig, options.burst, result)
        rig.process.signal(signal.SIGUSR2)
        await wait_for_file(paths[1])
    return paths


def sql_per_answer(options: PeerOptions) -> tuple[float, float]:
    """Statements and commits per answer in the profiled burst (bench/profiled_bot.py)."""
    counted = json.loads((options.profile_dir.resolve() / "sql-answers.json").read_text())
    return counted["statements"] / options.burst, counted["commits"] / options.burst


async def wait_for_file(path: Path, timeout: float = 30.0) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not path.exists():  # noqa: ASYNC240
        if time.monotonic() > deadline:
            raise RuntimeError(f"the profiler wrote no {path.name}")
        await asyncio.sleep(0.1)


async def run_peer(
    options: PeerOptions,
    progress: Callable[[str], None],
    against: tuple[str, Path | None] | None = None,
) -> PeerResults:
    """The bot, the baseline and (`against`: a name and the directory holding another
    commit's bot/) the previous bot."""
    progress("peer workload: the bot (python -m bot, Socket Mode, Responses, stream)")
    bot = await measure("bot", "bot", options)
    progress("peer workload: the baseline bot (python -m bench.baseline_bot)")
    baseline = await measure("baseline", "bench.baseline_bot", options)
    results = PeerResults(bot=bot, baseline=baseline)
    if against is not None:
        name, source = against
        progress(f"peer workload: the bot at {name}")
        results.previous = await measure(name, "bot", options, source)
    if options.profile:
        progress("peer workload: profiling the bot (pyinstrument)")
        try:
            results.profiles = await profile_bot(options)
            results.sql_per_answer = sql_per_answer(options)
        except Exception as exc:
            results.profile_error = f"{type(exc).__name__}: {exc}"[:600]
    return results


def p50(values: list[float]) -> float:
    return percentile(values, 50)
