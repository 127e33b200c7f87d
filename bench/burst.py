"""Burst and scale-out (issue 19): many new conversations at once on one or two bot
processes sharing one PostgreSQL database, beside the same processes' steady rate.

On one rig (one or two processes, events round-robin over them):

1. Steady rate: a closed loop of `concurrency` askers, each asking again as soon as its
   answer is in Slack, with the fast model: the answers/s the bot sustains on this machine.
2. Burst: `size` new conversations POSTed at the same moment (one connection each), while a
   probe asks one more every 1/`probe_rate` s until the last answer, each delivered as Slack
   does (an event not acked with 200 within 3 s is delivered again, up to 3 times, with
   X-Slack-Retry-Num): the burst's answers/s
   (every answer that reached Slack from the burst's start to its last answer, probes
   included, per second), its ratio to the steady rate, the acks of the burst's own requests
   and of the probes (the acks *throughout*), CPU per answer summed over the processes, every
   conversation answered exactly once (bot messages per thread in the fake Slack), and what
   the processes' /metrics (METRICS_PORT) counted meanwhile: answers per process, lease claims
   by outcome, time spent claiming, leases lost to the other process.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp

from bench.phases import ResourceSampler
from bench.rig import Config, Question, Rig

BURST_RATE_GOAL = 0.8
"""Answers/s during the burst ÷ steady answers/s, at least."""
ACK_THROUGHOUT_GOAL_S = 0.100
SCALE_OUT_CPU_GOAL = 1.1
"""CPU per answer summed over two processes ÷ one process's, at most."""
SLOW_CLAIM_S = 0.01
"""A lease claim slower than this waited on something (a row lock, the pool)."""
CLAIM_OUTCOMES = ("claimed", "held_elsewhere", "lock_timeout")
SLACK_TIMEOUT = aiohttp.ClientTimeout(total=3.0)
"""Slack gives up on a request not acked within 3 s, and delivers the event again."""
SLACK_RETRIES = 3
SLACK_RETRY_DELAY_S = 1.0
"""Slack retries nearly at once, then after 1 and 5 minutes; the bench waits 1 s each time."""


@dataclass(frozen=True)
class LeaseCounts:
    """What the bot processes' /metrics counted over a phase (summed over processes)."""

    answers_by_process: tuple[float, ...]
    claims: dict[str, float] | None
    """Lease claims by outcome; None when the bot exposes no `bot_lease_claims` (older bots)."""
    claim_s: float = math.nan
    slow_claims: float = math.nan
    leases_lost: float = math.nan


@dataclass
class BurstResult:
    config: Config
    bot: str
    """Which bot: `this checkout` or the `--against` commit."""
    size: int
    steady_per_s: float
    steady_cpu_per_answer: float
    burst_per_s: float
    burst_wall_s: float
    cpu_per_answer: float
    missing: int
    duplicates: int
    burst_acks: list[float]
    """First attempts, a timed-out one counted as its 3 s."""
    probe_acks: list[float]
    ack_errors: int
    """First attempts not acked with 200 within 3 s (Slack would deliver them again)."""
    retries: int
    undelivered: int
    """Events never acked with 200, retries included."""
    counts: LeaseCounts
    timeout_s: float
    steady_acks: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        if self.steady_per_s <= 0 or math.isnan(self.burst_per_s):
            return math.nan
        return self.burst_per_s / self.steady_per_s

    @property
    def acks_throughout(self) -> list[float]:
        """The probes' acks: events arriving while the bot works through the burst."""
        return self.probe_acks


# --------------------------------------------------------------------------- /metrics


async def scrape(http: aiohttp.ClientSession, url: str) -> dict[tuple[str, tuple[str, ...]], float]:
    """One process's samples: (name, sorted label values) → value; empty if unreachable."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        async with http.get(url) as response:
            text = await response.text()
    except (aiohttp.ClientError, TimeoutError):
        return {}
    samples: dict[tuple[str, tuple[str, ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[(sample.name, labels)] = sample.value
    return samples


Samples = dict[tuple[str, tuple[str, ...]], float]


async def scrape_all(rig: Rig) -> list[Samples]:
    return [await scrape(rig.http, bot.metrics_url) for bot in rig.bots]


def _total(samples: Samples, name: str, *labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels) <= set(ls))


def lease_counts(before: Sequence[Samples], after: Sequence[Samples]) -> LeaseCounts:
    """The counters' growth between two scrapes of every process, summed over processes."""

    def grown(name: str, *labels: str) -> float:
        pairs = zip(before, after, strict=True)
        return sum(_total(a, name, *labels) - _total(b, name, *labels) for b, a in pairs)

    answers = tuple(
        _total(a, "bot_answers_total") - _total(b, "bot_answers_total")
        for b, a in zip(before, after, strict=True)
    )
    if not any(name == "bot_lease_claims_total" for sample in after for name, _ in sample):
        return LeaseCounts(answers, None)
    bucket = f"le={SLOW_CLAIM_S}"
    return LeaseCounts(
        answers_by_process=answers,
        claims={o: grown("bot_lease_claims_total", f"outcome={o}") for o in CLAIM_OUTCOMES},
        claim_s=grown("bot_lease_claim_seconds_sum"),
        slow_claims=grown("bot_lease_claim_seconds_count")
        - grown("bot_lease_claim_seconds_bucket", bucket),
        leases_lost=grown("bot_leases_lost_total"),
    )


# --------------------------------------------------------------------------- the phases


class Cpu:
    """CPU seconds used by every bot process of a rig (children included)."""

    def __init__(self, rig: Rig) -> None:
        self._samplers = [ResourceSampler(pid) for pid in rig.pids]

    def seconds(self) -> float:
        return sum(sampler.cpu_s() for sampler in self._samplers)


def duplicates(rig: Rig, questions: Sequence[Question]) -> int:
    """Conversations with more than one bot message (two answers, or a stray placeholder)."""
    return sum(
        sum(1 for m in rig.slack.channel_messages(q.channel) if m.bot_id) > 1 for q in questions
    )


async def steady_rate(
    rig: Rig, seconds: float, concurrency: int
) -> tuple[float, float, list[Question]]:
    """Closed loop: answers/s after a settling second, CPU per answer, the questions asked."""
    fast = rig.fakes.fast_model_s
    rig.use_model((fast, fast))
    cpu = Cpu(rig)
    asked: list[Question] = []
    finals: list[float] = []
    start = time.monotonic()
    stop_at = start + seconds
    cpu_before = cpu.seconds()

    async def asker() -> None:
        while time.monotonic() < stop_at:
            question = rig.prepare("R", 1)[0]
            asked.append(question)
            await rig.send(question)
            if await rig.tracker.wait([question.channel], timeout=30):
                return
            final = rig.tracker.final_at(question.channel)
            if final is not None:
                finals.append(final)

    await asyncio.gather(*(asker() for _ in range(concurrency)))
    cpu_used = cpu.seconds() - cpu_before
    settle = min(1.0, seconds / 4)
    window = [at for at in finals if start + settle <= at <= stop_at]
    per_s = len(window) / max(1e-9, stop_at - start - settle)
    return per_s, cpu_used / max(1, len(finals)), asked


async def _probe(
    rig: Rig, rate: float, done: asyncio.Event, asked: list[Question], retries: list[int]
) -> None:
    """One more conversation every 1/rate s until `done`: acks while the bot is busy."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=10)) as http:
        while not done.is_set():
            question = rig.prepare("P", 1)[0]
            asked.append(question)
            retries.append(await deliver(rig, question, http))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), timeout=1 / rate)


async def deliver(rig: Rig, question: Question, http: aiohttp.ClientSession) -> int:
    """POST an event as Slack does: a request not acked with 200 within 3 s is delivered
    again (X-Slack-Retry-Num), up to 3 times; `question` keeps the first attempt. The retries
    made, or -1 if none was acked."""
    await rig.send(question, http, SLACK_TIMEOUT)
    status, retries = question.status, 0
    while status != 200 and retries < SLACK_RETRIES:
        retries += 1
        await asyncio.sleep(SLACK_RETRY_DELAY_S)
        reason = "http_timeout" if status == -1 else "http_error"
        headers = {
            **question.headers,
            "X-Slack-Retry-Num": str(retries),
            "X-Slack-Retry-Reason": reason,
        }
        again = Question(question.token, question.channel, question.body, headers)
        await rig.send(again, http, SLACK_TIMEOUT)
        status = again.status
    return retries if status == 200 else -1


def first_ack_s(question: Question) -> float:
    return question.ack_s if question.status == 200 else SLACK_TIMEOUT.total or math.nan


def burst_timeout(size: int) -> float:
    return 30.0 + size / 5


async def burst_phase(
    rig: Rig,
    size: int,
    *,
    steady_s: float,
    concurrency: int,
    probe_rate: float,
    bot: str,
) -> BurstResult:
    steady_per_s, steady_cpu, steady_asked = await steady_rate(rig, steady_s, concurrency)
    await asyncio.sleep(0.5)
    questions = rig.prepare("B", size)
    probes: list[Question] = []
    cpu = Cpu(rig)
    before = await scrape_all(rig)
    cpu_before = cpu.seconds()
    done = asyncio.Event()
    timeout = burst_timeout(size)
    burst = time.monotonic()
    retries: list[int] = []
    probing = asyncio.create_task(_probe(rig, probe_rate, done, probes, retries))
    connector = aiohttp.TCPConnector(limit=size)
    async with aiohttp.ClientSession(connector=connector) as http:
        retries += await asyncio.gather(*(deliver(rig, q, http) for q in questions))
    missing = await rig.tracker.wait([q.channel for q in questions], timeout)
    done.set()
    await probing
    await rig.tracker.wait([q.channel for q in probes], 15)
    cpu_used = cpu.seconds() - cpu_before
    await asyncio.sleep(1.0)  # a second answer, if any, has time to show
    counts = lease_counts(before, await scrape_all(rig))
    finals = [rig.tracker.final_at(q.channel) for q in questions]
    delivered = [at for at in finals if at is not None]
    last = max(delivered, default=math.nan)
    in_window = [
        at
        for q in (*questions, *probes)
        if (at := rig.tracker.final_at(q.channel)) is not None and at <= last
    ]
    everyone = [*steady_asked, *questions, *probes]
    answered = sum(rig.tracker.final_at(q.channel) is not None for q in (*questions, *probes))
    return BurstResult(
        config=rig.config,
        bot=bot,
        size=size,
        steady_per_s=steady_per_s,
        steady_cpu_per_answer=steady_cpu,
        burst_per_s=len(in_window) / (last - burst) if delivered else math.nan,
        burst_wall_s=last - burst,
        cpu_per_answer=cpu_used / max(1, answered),
        missing=len(missing),
        duplicates=duplicates(rig, everyone),
        burst_acks=[first_ack_s(q) for q in questions],
        probe_acks=[first_ack_s(q) for q in probes],
        ack_errors=sum(q.status != 200 for q in (*questions, *probes)),
        retries=sum(max(0, n) for n in retries),
        undelivered=retries.count(-1),
        counts=counts,
        timeout_s=timeout,
        steady_acks=[q.ack_s for q in steady_asked if q.status == 200],
    )
