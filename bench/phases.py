"""The measurements. Each phase drives a running `Rig` and returns its raw samples."""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp

from bench.rig import TOKEN_RE, Config, FakeOptions, Question, Rig, start_fakes
from tests.fakes.openai_api import FakeOpenAI, FakeRequest, FakeResponse, FakeRun
from tests.fakes.slack import FakeSlack

if TYPE_CHECKING:
    import psutil  # type: ignore[import-untyped]

ID_SEGMENT_RE = re.compile(r"^[a-z]+_[A-Za-z0-9]+$")
LIGHT_RATE = 5
"""Events/s of the light-load ack baseline."""
ACK_GOAL_RATE = 200
ACK_GOAL_P99_S = 0.050
SCALE_GOAL_SIZE = 1000
SCALE_RSS_GOAL_MB = 200.0
SCALE_EXCESS_GOAL_S = 1.0


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (NaN for no values): p99 of 100 values is the 99th smallest."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


# --------------------------------------------------------------------------- load helpers


async def open_loop(rig: Rig, questions: Sequence[Question], rate: float) -> list[float]:
    """Send at fixed intervals without waiting for answers; how late each send started."""
    start = time.monotonic() + 0.05
    tasks = []
    lags = []
    for index, question in enumerate(questions):
        target = start + index / rate
        delay = target - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        lags.append(time.monotonic() - target)
        tasks.append(asyncio.create_task(rig.send(question)))
    await asyncio.gather(*tasks)
    return lags


class LoopLag:
    """How late this process's event loop wakes from 5 ms sleeps: the measuring noise.

    The fakes and the load generator share this loop; when it lags, measured latencies
    include that lag, so it is reported next to them.
    """

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.005)
            self.samples.append(time.monotonic() - before - 0.005)

    def __enter__(self) -> LoopLag:
        self._task = asyncio.ensure_future(self._run())
        return self

    def __exit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()


class ResourceSampler:
    """Peak RSS of the bot process and its children, sampled every 50 ms; CPU seconds used."""

    def __init__(self, pid: int) -> None:
        import psutil  # a bench extra: imported when used, so `--help` works without it

        self._process = psutil.Process(pid)
        self.peak_rss = 0
        self._task: asyncio.Task[None] | None = None

    def _family(self) -> list[psutil.Process]:
        return [self._process, *self._process.children(recursive=True)]

    def rss(self) -> int:
        import psutil

        total = 0
        for process in self._family():
            with contextlib.suppress(psutil.Error):
                total += process.memory_info().rss
        return total

    def cpu_s(self) -> float:
        import psutil

        total = 0.0
        for process in self._family():
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    async def _run(self) -> None:
        while True:
            self.peak_rss = max(self.peak_rss, self.rss())
            await asyncio.sleep(0.05)

    def __enter__(self) -> ResourceSampler:
        self.peak_rss = self.rss()
        self._task = asyncio.ensure_future(self._run())
        return self

    def __exit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()
        self.peak_rss = max(self.peak_rss, self.rss())


# --------------------------------------------------------------------------- 1. ack latency


@dataclass
class AckResult:
    """Ack latency: POST /slack/events started → its response read, at one event rate.

    `answered_per_s`: final answers that reached Slack from the first event until 1 s after the
    last, per second; below the event rate, the bot answers slower than events arrive.
    `generator_lag_max`: how late the load generator started its latest send.
    `light`: the light-load baseline, not one of the goal rates.
    """

    config: Config
    rate: int
    latencies: list[float]
    errors: int
    answered_per_s: float
    generator_lag_max: float
    loop_lag_p99: float
    light: bool = False


async def ack_phase(rig: Rig, rate: int, seconds: float, *, light: bool = False) -> AckResult:
    """Open-loop mentions at `rate`/s for `seconds`, each a new conversation that the bot
    answers with the fast model while the load runs. A light phase then waits for all answers,
    so the bot is idle again for the next phase."""
    rig.use_model((rig.fakes.fast_model_s, rig.fakes.fast_model_s))
    questions = rig.prepare(f"A{rate}X", max(1, round(rate * seconds)))
    channels = [q.channel for q in questions]
    with LoopLag() as lag:
        generator_lags = await open_loop(rig, questions, rate)
    first_send = min(q.sent_at for q in questions)
    window_end = max(q.sent_at for q in questions) + 1.0
    await asyncio.sleep(max(0.0, window_end - time.monotonic()))
    rig.tracker.update()
    finals = [rig.tracker.final_at(channel) for channel in channels]
    if light:
        await rig.tracker.wait(channels, timeout=15)
    return AckResult(
        config=rig.config,
        rate=rate,
        latencies=[q.ack_s for q in questions if q.status == 200],
        errors=sum(q.status != 200 for q in questions),
        answered_per_s=sum(at is not None and at <= window_end for at in finals)
        / (window_end - first_send),
        generator_lag_max=max(generator_lags),
        loop_lag_p99=percentile(lag.samples, 99),
        light=light,
    )


# --------------------------------------------------------------------------- 2/3/5. answers


@dataclass
class AnswerResult:
    """Answer overhead and calls per answer, for questions spaced in time.

    `overheads`: model finished (FakeOpenAI.completed_at) → complete answer in Slack: what the
    bot adds on top of the model (poll lag, reading the answer, database, formatting, posting).
    `placeholder`: event sent → first bot message in the thread (the sign of life).
    `first_text`: event sent → first words of the answer in Slack (streamed or whole).
    `calls`: requests per answer, by API call.
    """

    config: Config
    naive: bool
    overheads: list[float]
    placeholder: list[float]
    first_text: list[float]
    missing: int
    calls: dict[str, float]
    streamed: bool


def completion_times(openai: FakeOpenAI) -> dict[str, float]:
    """Question token → when its completed run or response finished in the fake."""
    found: dict[str, float] = {}
    items: list[FakeRun | FakeResponse] = [
        run for thread in openai.threads.values() for run in thread.runs
    ]
    items += openai.responses.values()
    for item in items:
        match = TOKEN_RE.search(item.reply)
        if match and item.id in openai.completed_at:
            found[match.group(0)] = openai.completed_at[item.id]
    return found


def is_stream_request(request: FakeRequest) -> bool:
    """A streamed create (`"stream": true`) or a stream of an existing response/run
    (`?stream=true`)."""
    body = request.body
    return (isinstance(body, dict) and body.get("stream") is True) or request.query.get(
        "stream"
    ) == "true"


def call_key_openai(method: str, path: str) -> str:
    """`GET /v1/threads/thread_abc/runs/run_def` → `GET /v1/threads/{id}/runs/{id}`."""
    parts = ["{id}" if ID_SEGMENT_RE.match(part) else part for part in path.split("/")]
    return f"{method} {'/'.join(parts)}"


def count_calls(
    slack: FakeSlack, openai: FakeOpenAI, slack_from: int, openai_from: int, answers: int
) -> dict[str, float]:
    """Calls per answer to each API method since the given positions in the fakes' logs."""
    counts: Counter[str] = Counter()
    for call in slack.calls[slack_from:]:
        counts[f"Slack {call.method}"] += 1
    for request in openai.requests[openai_from:]:
        streamed = " (stream)" if is_stream_request(request) else ""
        counts[f"OpenAI {call_key_openai(request.method, request.path)}{streamed}"] += 1
    return {key: value / max(1, answers) for key, value in sorted(counts.items())}


async def answer_phase(
    rig: Rig, count: int, *, spacing_s: float, model_s: tuple[float, float], naive: bool
) -> AnswerResult:
    """`count` questions, one every `spacing_s` (open loop), a random model time each."""
    rig.use_model(model_s)
    slack_from, openai_from = len(rig.slack.calls), len(rig.openai.requests)
    questions = rig.prepare("Q", count)
    await open_loop(rig, questions, 1 / spacing_s)
    missing = await rig.tracker.wait([q.channel for q in questions], model_s[1] + 30)
    await asyncio.sleep(0.3)  # trailing calls after the answer (if any) count too
    rig.tracker.update()
    finished = completion_times(rig.openai)
    seen = [(q, rig.tracker.seen[q.channel]) for q in questions]
    return AnswerResult(
        config=rig.config,
        naive=naive,
        overheads=[
            s.final_at - finished[q.token]
            for q, s in seen
            if s.final_at is not None and q.token in finished
        ],
        placeholder=[s.placeholder_at - q.sent_at for q, s in seen if s.placeholder_at],
        first_text=[s.first_text_at - q.sent_at for q, s in seen if s.first_text_at],
        missing=len(missing),
        calls=count_calls(rig.slack, rig.openai, slack_from, openai_from, count - len(missing)),
        streamed=any(is_stream_request(r) for r in rig.openai.requests[openai_from:]),
    )


# --------------------------------------------------------------------------- 4. scale


@dataclass
class ScaleResult:
    """`size` conversations started at the same moment, with a fixed model time.

    `excess`: per answer, (complete answer in Slack − burst start) − model time.
    `total_s`: burst start → last answer. `cpu_per_answer`: bot CPU seconds (user+system,
    children included) from the burst until the last answer (or the timeout), per answer.
    """

    config: Config
    size: int
    model_s: float
    total_s: float
    excess: list[float]
    missing: int
    idle_rss: int
    peak_rss: int
    cpu_per_answer: float
    ack_p99: float
    timeout_s: float


def scale_timeout(model_s: float, size: int) -> float:
    """How long a scale phase waits for its answers: bounded, so a slow bot ends the phase."""
    return model_s + min(30.0, max(20.0, size * 0.06))


async def scale_phase(rig: Rig, size: int, *, model_s: float) -> ScaleResult:
    rig.use_model((model_s, model_s))
    questions = rig.prepare(f"S{size}X", size)
    sampler = ResourceSampler(rig.pid)
    await asyncio.sleep(0.5)
    idle_rss = sampler.rss()
    timeout = scale_timeout(model_s, size)
    with sampler:
        cpu_before = sampler.cpu_s()
        burst = time.monotonic()
        await asyncio.gather(*(rig.send(q) for q in questions))
        missing = await rig.tracker.wait([q.channel for q in questions], timeout)
        cpu_used = sampler.cpu_s() - cpu_before
    finals = [rig.tracker.final_at(q.channel) for q in questions]
    delivered = [at for at in finals if at is not None]
    model_total = model_s + rig.fakes.queue_s
    return ScaleResult(
        config=rig.config,
        size=size,
        model_s=model_total,
        total_s=max(delivered, default=math.nan) - burst,
        excess=[at - burst - model_total for at in delivered],
        missing=len(missing),
        idle_rss=idle_rss,
        peak_rss=sampler.peak_rss,
        cpu_per_answer=cpu_used / max(1, len(delivered)),
        ack_p99=percentile([q.ack_s for q in questions if q.status == 200], 99),
        timeout_s=timeout,
    )


# --------------------------------------------------------------------------- the fakes


@dataclass
class FakeCost:
    """Round trips of a trivial request from this process to each idle fake, in seconds."""

    slack: list[float]
    openai: list[float]


async def measure_fakes(fakes: FakeOptions, count: int = 200) -> FakeCost:
    slack, openai = await start_fakes(fakes, (0.01, 0.01))
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=10)) as http:
            slack_auth = {"Authorization": f"Bearer {slack.bot_token}"}
            openai_auth = {"Authorization": f"Bearer {openai.api_key}"}
            conversations = f"{openai.base_url}/conversations"
            async with http.post(conversations, json={}, headers=openai_auth) as response:
                conversation = (await response.json())["id"]
            slack_url = f"{slack.api_url}auth.test"
            openai_url = f"{conversations}/{conversation}"
            return FakeCost(
                slack=await _round_trips(http, "POST", slack_url, slack_auth, count),
                openai=await _round_trips(http, "GET", openai_url, openai_auth, count),
            )
    finally:
        await openai.stop()
        await slack.stop()


async def _round_trips(
    http: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str], count: int
) -> list[float]:
    times = []
    for _ in range(count):
        started = time.monotonic()
        async with http.request(method, url, headers=headers) as response:
            await response.read()
        times.append(time.monotonic() - started)
    return times
