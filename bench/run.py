"""Benchmark: the real bot process (`python -m bot`, HTTP mode) against in-process fakes.

    python -m bench.run [--quick] [--everything] [--out bench/results] [--against REF]
    python -m bench.run --workload peer [--profile]      # issue 12's workload alone, ~2 min
    python -m bench.run --workload burst [--against REF] # issue 19's burst alone, ~6 min

The fake Slack Web API and fake OpenAI API (tests/fakes) run in this process on asyncio; the
bot runs as a subprocess exactly as a user starts it, configured by environment variables
(the bot's defaults, only URLs and keys pointed at the fakes), against a brand-new database for
every bot process: a temporary SQLite file or a PostgreSQL database `bench_<uuid>`, dropped
afterwards. Events are signed the way Slack signs them and POSTed to /slack/events. Every bot
process is warmed up with one answered question before anything is measured.

Measurements (see bench/phases.py for the exact definitions):

1. Ack latency of POST /slack/events at a light 5 events/s and at 100/200/300 events/s, open
   loop (sends follow a clock, never waiting for earlier answers); every event is a new
   conversation that the bot answers with a fast model while the load runs.
2. Answer overhead: fake model finished → complete answer in the fake Slack.
3. Calls per answer to each Slack method and OpenAI method+path.
4. Scale: 100 (and 1,000) conversations at the same moment with a 5 s model: time to answer
   all, answer time − model time, peak RSS, CPU per answer.
5. Naive polling (a fixed 1 s poll, like the SDK's create_and_poll) versus the bot's own.
6. The peer workload (bench/peer.py): Socket Mode, a 1 s model streaming 3 deltas, 20 mentions
   one after another then 30 at once, the bot beside a minimal baseline bot: CPU per answer,
   idle CPU, peak RSS, burst wall time, event → answer, calls per answer. `--workload peer`
   runs it alone (bench/results/peer.md); `--profile` adds pyinstrument profiles of the bot.
7. Burst and scale-out (bench/burst.py, issue 19): one PostgreSQL database shared by one and
   then two bot processes (each its own PORT and METRICS_PORT, events round-robin over them):
   the steady rate (a closed loop of 40 askers, fast model), then 1,000 new conversations at
   once (quick: 60) with a probe asking 1/s until the last answer: every conversation answered
   exactly once (bot messages per thread in the fake Slack; events are redelivered as Slack
   does when not acked with 200 within 3 s), burst answers/s and its ratio to
   the steady rate (≥ 0.8), acks of the burst and of the probes ("throughout", p99 ≤ 100 ms),
   CPU per answer summed over the processes (two ÷ one ≤ 1.1), and from each process's
   /metrics: answers per process, lease claims by outcome (claimed / held elsewhere / lock
   timeout), claims slower than 10 ms and leases lost. `--workload burst` runs it alone
   (bench/results/burst.md). The two-process configuration also gets the ack phases of a full
   run, for bench/results/ack-rates.png: ack p50/p99 against event rate for SQLite and
   PostgreSQL, one and two processes.

`--against REF` (bench/against.py) unpacks `git archive REF bot` into a temporary directory and
runs that bot beside this checkout's in the same run, for the burst (interleaved: one process
here, there; two processes here, there) and the peer workload, and reports this ÷ that as
ratios, so a regression shows as a ratio on the same machine at the same load.

Which configuration gets which measurement is decided by `build_plan` (printed in the report):
the full matrix at the spec'd durations takes over 10 minutes on 2 cores, mostly because the
bot answers ~10 new conversations/s and every bot process takes ~3.5 s to start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.against import THIS_CHECKOUT, BotSource, checked_out
from bench.burst import BurstResult, burst_phase
from bench.peer import PeerOptions, PeerResults, run_peer
from bench.phases import (
    ACK_GOAL_RATE,
    LIGHT_RATE,
    AckResult,
    AnswerResult,
    FakeCost,
    ScaleResult,
    ack_phase,
    answer_phase,
    measure_fakes,
    scale_phase,
)
from bench.rig import Config, FakeOptions, Noise, Rig, running_rig

ROOT = Path(__file__).resolve().parent.parent
NAIVE_ENV = {"POLL_INITIAL_MS": "1000", "POLL_MAX_MS": "1000"}
LARGE_SCALE = Config("responses", "postgres", "poll")
SCALE_OUT = Config("responses", "postgres", "poll", processes=2)
"""Two processes on one PostgreSQL: the ack sweep (full run) and the burst."""


@dataclass(frozen=True)
class Options:
    quick: bool
    everything: bool
    out: Path
    backends: tuple[str, ...]
    databases: tuple[str, ...]
    deliveries: tuple[str, ...]
    ack_rates: tuple[int, ...]
    ack_seconds: float
    light_acks: int
    answers: int
    naive_answers: int
    answer_spacing_s: float
    answer_model_s: tuple[float, float]
    scale_sizes: tuple[int, ...]
    scale_model_s: float
    fakes: FakeOptions
    workload: str = "all"
    peer: PeerOptions = field(default_factory=PeerOptions)
    burst: int = 1000
    burst_processes: tuple[int, ...] = (1, 2)
    steady_s: float = 15.0
    steady_concurrency: int = 40
    probe_rate: float = 1.0
    against: str | None = None


def parse_options(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--quick", action="store_true", help="about a minute: responses backend, poll only")
    add("--everything", action="store_true", help="every measurement on every configuration")
    add("--out", type=Path, default=ROOT / "bench" / "results", help="where to write results")
    add("--backends", help="threads,responses,chat (quick: responses)")
    add("--databases", default="sqlite,postgres")
    add("--deliveries", help="poll,stream (quick: poll); stream only if the bot implements it")
    add("--ack-rates", default="100,200,300", help="events/s (quick: 200 only)")
    add("--ack-seconds", type=float, help="seconds per ack rate (10; quick 3)")
    add("--answers", type=int, help="questions per answer phase (50; quick 12)")
    add("--naive-answers", type=int, help="questions for the naive bot (25; quick 12)")
    add("--answer-spacing-ms", type=float, default=200, help="between questions")
    add("--answer-model-s", default="0.5,3", help="model time range, uniform")
    add("--scale", help="conversations at once (100,1000; quick 100)")
    add("--scale-model-s", type=float, default=5.0)
    add("--fast-model-ms", type=float, default=50, help="model time in ack phases")
    add("--slack-latency-ms", type=float, default=0.0, help="fake Slack's delay per request")
    add("--openai-latency-ms", type=float, default=0.0, help="fake OpenAI's delay per request")
    add("--queue-ms", type=float, default=0.0, help="how long fake runs stay queued")
    add("--seed", type=int, default=1)
    add(
        "--workload",
        choices=("all", "peer", "classic", "burst"),
        default="all",
        help="peer: the peer workload alone; classic: everything but it; burst: the burst alone",
    )
    add("--burst", type=int, help="burst: conversations at once (1000; quick 60)")
    add("--burst-processes", default="1,2", help="burst: bot processes on one PostgreSQL")
    add("--steady-s", type=float, help="burst: seconds of the steady-rate reference (15; quick 4)")
    add("--steady-concurrency", type=int, default=40, help="burst: askers in the steady loop")
    add("--probe-rate", type=float, default=1.0, help="burst: probe events/s during the burst")
    add("--against", metavar="REF", help="also run the burst (and peer) on the bot at git REF")
    add("--webhook-delay-ms", type=float, default=20, help="fake OpenAI's webhook delay")
    add("--profile", action="store_true", help="peer workload: also profile the bot")
    add("--peer-sequential", type=int, default=20, help="peer: mentions one after another")
    add("--peer-burst", type=int, default=30, help="peer: mentions at once")
    add("--peer-idle-s", type=float, default=10.0, help="peer: seconds of idling measured")
    args = parser.parse_args(argv)
    quick = bool(args.quick)
    low, high = (float(x) for x in _csv(args.answer_model_s))
    return Options(
        quick=quick,
        everything=bool(args.everything),
        out=args.out,
        backends=_csv(args.backends or ("responses" if quick else "threads,responses,chat")),
        databases=_csv(args.databases),
        deliveries=_csv(args.deliveries or ("poll" if quick else "poll,stream")),
        ack_rates=_ints(str(ACK_GOAL_RATE) if quick else args.ack_rates),
        ack_seconds=args.ack_seconds or (3.0 if quick else 10.0),
        light_acks=10,
        answers=args.answers or (12 if quick else 50),
        naive_answers=args.naive_answers or (12 if quick else 25),
        answer_spacing_s=args.answer_spacing_ms / 1000,
        answer_model_s=(low, high),
        scale_sizes=_ints(args.scale or ("100" if quick else "100,1000")),
        scale_model_s=args.scale_model_s,
        fakes=FakeOptions(
            slack_latency_s=args.slack_latency_ms / 1000,
            openai_latency_s=args.openai_latency_ms / 1000,
            queue_s=args.queue_ms / 1000,
            fast_model_s=args.fast_model_ms / 1000,
            seed=args.seed,
            webhook_delay_s=args.webhook_delay_ms / 1000,
        ),
        workload=args.workload,
        burst=args.burst or (60 if quick else 1000),
        burst_processes=_ints(args.burst_processes),
        steady_s=args.steady_s or (4.0 if quick else 15.0),
        steady_concurrency=args.steady_concurrency,
        probe_rate=args.probe_rate,
        against=args.against,
        peer=PeerOptions(
            sequential=args.peer_sequential,
            burst=args.peer_burst,
            idle_s=args.peer_idle_s,
            profile=bool(args.profile),
            profile_dir=args.out,
        ),
    )


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _ints(raw: str) -> tuple[int, ...]:
    return tuple(int(part) for part in _csv(raw))


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Plan:
    """Which configuration gets which measurement.

    Every configuration: light-load acks, answer overhead + calls, and acks at the goal rate
    (all on one bot process). `scale`: also 100 at once (same bot). `naive`: also the 1 s poll
    bot. `sweep`: also the other ack rates, each on a fresh bot. `large`: 1,000 at once.
    """

    configs: tuple[Config, ...]
    scale: frozenset[Config]
    naive: frozenset[Config]
    sweep: frozenset[Config]
    large: Config
    skipped: tuple[str, ...] = ()

    def describe(self) -> list[str]:
        def names(configs: frozenset[Config]) -> str:
            chosen = [c.label for c in self.configs if c in configs]
            return "all" if len(chosen) == len(self.configs) else ", ".join(chosen) or "none"

        return [
            f"every configuration ({len(self.configs)}): light-load acks, answer overhead, "
            f"calls per answer, acks at {ACK_GOAL_RATE}/s",
            f"scale 100: {names(self.scale)}; naive 1 s poll: {names(self.naive)}; "
            f"other ack rates: {names(self.sweep)}; scale 1,000: {self.large.label}",
            *self.skipped,
        ]


def stream_support() -> str | None:
    """None if the bot's turn engine streams; otherwise why DELIVERY=stream is n/a."""
    source = (ROOT / "bot" / "turns" / "runner.py").read_text(encoding="utf-8")
    if "stream_run" not in source:
        return "bot/turns/runner.py never calls stream_run: DELIVERY=stream is not implemented"
    return None


def build_plan(options: Options) -> Plan:
    skipped: list[str] = []
    deliveries = list(options.deliveries)
    reason = stream_support()
    if "stream" in deliveries and reason is not None:
        deliveries.remove("stream")
        skipped.append(f"stream: n/a ({reason})")
    configs = [
        Config(backend, database, delivery)
        for backend in options.backends
        for database in options.databases
        for delivery in deliveries
        if options.everything or not (backend == "threads" and delivery == "stream")
    ]
    if not options.everything and "threads" in options.backends and "stream" in deliveries:
        skipped.append("threads·stream: not run (`--everything` runs it)")
    poll = frozenset(c for c in configs if c.delivery == "poll")
    if not configs:
        raise SystemExit("bench: nothing to run with these --backends/--databases/--deliveries")
    # Issue 12: responses·poll once more with OpenAI's webhooks (POST /openai/webhook): light
    # acks, answer overhead, calls and acks at the goal rate only.
    hooked = tuple(
        Config(c.backend, c.database, c.delivery, webhooks=True)
        for c in configs
        if c.backend == "responses" and c.delivery == "poll" and not options.quick
    )
    # Issue 19: two processes on one PostgreSQL, for the ack-latency-against-rate plot.
    two = (SCALE_OUT,) if LARGE_SCALE in configs and not options.quick else ()
    if options.everything:
        everything = frozenset(configs)
        return Plan(
            (*configs, *hooked, *two),
            everything,
            poll,
            everything | frozenset(two),
            LARGE_SCALE,
            tuple(skipped),
        )
    if options.quick:
        extras = frozenset({LARGE_SCALE if LARGE_SCALE in configs else configs[-1]})
        return Plan(tuple(configs), extras, extras & poll, frozenset(), LARGE_SCALE, tuple(skipped))
    responses = frozenset(c for c in configs if c.backend == "responses")
    if len(responses) < len(configs):
        skipped.append(
            "threads: scale 100, naive poll and other ack rates not run (the Assistants API is "
            "retired; `--everything` runs them)"
        )
    return Plan(
        (*configs, *hooked, *two),
        responses,
        responses & poll,
        (responses & poll) | frozenset(two),
        LARGE_SCALE,
        tuple(skipped),
    )


# --------------------------------------------------------------------------- orchestration


@dataclass(frozen=True)
class DbActivity:
    """PostgreSQL counters over one bot process's life (pg_stat_database), and its answers."""

    config: Config
    stage: str
    received: int
    answered: int
    sessions: int
    commits: int
    rollbacks: int


@dataclass
class Results:
    acks: list[AckResult] = field(default_factory=list)
    answers: list[AnswerResult] = field(default_factory=list)
    scales: list[ScaleResult] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    log_notes: dict[str, list[str]] = field(default_factory=dict)
    db_activity: list[DbActivity] = field(default_factory=list)
    noise: list[tuple[str, tuple[float, float]]] = field(default_factory=list)
    """Per stage: CPU cores used by other processes (PostgreSQL included), and stolen."""
    fake_cost: FakeCost | None = None
    bursts: list[BurstResult] = field(default_factory=list)
    load_average: tuple[float, float, float] = (0.0, 0.0, 0.0)
    source_digests: tuple[str, str] = ("", "")
    """Digest of bot/ at the start and at the end of the run: differ if it was edited."""
    peer: PeerResults | None = None


def source_digest() -> str:
    """A digest of the bot's code (bot/**/*.py), to notice edits made during a run."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "bot").rglob("*.py")):
        digest.update(path.relative_to(ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@contextlib.asynccontextmanager
async def stage(
    results: Results, config: Config, what: str, options: Options, **rig_args: Any
) -> AsyncIterator[Rig | None]:
    """A rig for one stage; a failure is recorded in the results instead of ending the run."""
    progress(f"{config.label}: {what}")
    used: Rig | None = None
    noise = Noise()
    try:
        async with running_rig(config, options.fakes, **rig_args) as rig:
            used = rig
            yield rig
    except Exception as exc:
        results.failures.append(f"{config.label} {what}: {type(exc).__name__}: {exc}"[:400])
        progress(f"{config.label}: {what} failed: {exc!r}"[:300])
        if used is None:
            yield None
    finally:
        results.noise.append((f"{config.label}: {what}", noise.cores()))
        if used is not None:
            record_rig(results, used, what)


def record_rig(results: Results, rig: Rig, what: str) -> None:
    """Keep what a finished bot process left behind: log warnings, database activity."""
    notes = results.log_notes.setdefault(rig.config.label, [])
    notes.extend(f"{what}: {note}" for note in rig.log_notes)
    activity = rig.db_activity
    if activity:
        results.db_activity.append(
            DbActivity(
                config=rig.config,
                stage=what,
                received=len(rig.tracker.seen),
                answered=rig.answered,
                sessions=activity.get("sessions", 0),
                commits=activity.get("xact_commit", 0),
                rollbacks=activity.get("xact_rollback", 0),
            )
        )


async def main_bot(config: Config, options: Options, plan: Plan, results: Results) -> bool:
    """Light acks, scale 100, answers, acks at the goal rate — on one bot; False if stream
    delivery turned out not to stream."""
    model = options.answer_model_s
    async with stage(results, config, "main", options, model_s=model) as rig:
        if rig is None:
            return True
        seconds = options.light_acks / LIGHT_RATE
        results.acks.append(await ack_phase(rig, LIGHT_RATE, seconds, light=True))
        if config in plan.scale:
            for size in (s for s in options.scale_sizes if s <= 100):
                results.scales.append(await scale_phase(rig, size, model_s=options.scale_model_s))
        answers = await answer_phase(
            rig, options.answers, spacing_s=options.answer_spacing_s, model_s=model, naive=False
        )
        if config.delivery == "stream" and not answers.streamed:
            results.unavailable.append(
                f"{config.label}: n/a (DELIVERY=stream accepted, but nothing was streamed)"
            )
            return False
        results.answers.append(answers)
        if ACK_GOAL_RATE in options.ack_rates:
            results.acks.append(await ack_phase(rig, ACK_GOAL_RATE, options.ack_seconds))
    return True


async def naive_bot(config: Config, options: Options, results: Results) -> None:
    model = options.answer_model_s
    async with stage(results, config, "naive", options, model_s=model, extra_env=NAIVE_ENV) as rig:
        if rig is not None:
            answers = await answer_phase(
                rig,
                options.naive_answers,
                spacing_s=options.answer_spacing_s,
                model_s=model,
                naive=True,
            )
            results.answers.append(answers)


async def sweep_bots(config: Config, options: Options, results: Results) -> None:
    fast = (options.fakes.fast_model_s, options.fakes.fast_model_s)
    for rate in (r for r in options.ack_rates if r != ACK_GOAL_RATE):
        async with stage(results, config, f"ack {rate}/s", options, model_s=fast) as rig:
            if rig is not None:
                results.acks.append(await ack_phase(rig, rate, options.ack_seconds))


async def large_scale(options: Options, plan: Plan, results: Results) -> None:
    model = (options.scale_model_s, options.scale_model_s)
    for size in (s for s in options.scale_sizes if s > 100):
        async with stage(results, plan.large, f"scale {size}", options, model_s=model) as rig:
            if rig is not None:
                results.scales.append(await scale_phase(rig, size, model_s=options.scale_model_s))


async def burst_bots(options: Options, results: Results) -> None:
    """The burst on one and on two processes, for this checkout and the `--against` bot,
    interleaved so both see the same machine."""
    with contextlib.ExitStack() as stack:
        sources = [BotSource(THIS_CHECKOUT)]
        if options.against:
            sources.append(stack.enter_context(checked_out(options.against)))
        for processes in options.burst_processes:
            config = Config("responses", "postgres", "poll", processes=processes)
            for source in sources:
                fast = (options.fakes.fast_model_s, options.fakes.fast_model_s)
                what = f"burst {options.burst} ({source.name})"
                async with stage(
                    results, config, what, options, model_s=fast, source=source.path
                ) as rig:
                    if rig is not None:
                        results.bursts.append(
                            await burst_phase(
                                rig,
                                options.burst,
                                steady_s=options.steady_s,
                                concurrency=options.steady_concurrency,
                                probe_rate=options.probe_rate,
                                bot=source.name,
                            )
                        )


async def peer_workload(options: Options) -> PeerResults:
    """The peer workload; with `--against`, the bot at that commit too."""
    if not options.against:
        return await run_peer(options.peer, progress)
    with checked_out(options.against) as source:
        return await run_peer(options.peer, progress, (source.name, source.path))


async def run_all(options: Options, plan: Plan) -> Results:
    results = Results(unavailable=list(plan.skipped), load_average=os.getloadavg())
    first_digest = source_digest()
    if options.workload == "burst":
        results.unavailable.clear()
        await burst_bots(options, results)
        results.source_digests = (first_digest, source_digest())
        return results
    results.fake_cost = await measure_fakes(options.fakes)
    for config in plan.configs:
        if not await main_bot(config, options, plan, results):
            continue
        if config in plan.naive:
            await naive_bot(config, options, results)
        if config in plan.sweep:
            await sweep_bots(config, options, results)
    await large_scale(options, plan, results)
    await burst_bots(options, results)
    if options.workload == "all":
        results.peer = await peer_workload(options)
    results.source_digests = (first_digest, source_digest())
    return results


def result_paths(options: Options) -> tuple[Path, Path, Path]:
    """Where the report and the charts go. `--quick` writes `quick.md`/`quick-*.png`
    (git-ignored), so a quick run never overwrites the full results docs/benchmarks.md links
    to; so does `--workload burst`."""
    prefix = "quick-" if options.quick else ("burst-" if options.workload == "burst" else "")
    if prefix:
        report_name = f"{prefix.rstrip('-')}.md"
        return (
            options.out / report_name,
            options.out / f"{prefix}latency.png",
            options.out / f"{prefix}ack-rates.png",
        )
    return options.out / "latest.md", options.out / "latency.png", options.out / "ack-rates.png"


def missing_extras(*, profile: bool = False) -> list[str]:
    """The bench extras (`pip install -e '.[test,bench]'`) that are not installed."""
    import importlib

    missing = []
    for name in ("psutil", "matplotlib", *(("pyinstrument",) if profile else ())):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    missing = missing_extras(profile=options.peer.profile)
    if missing:
        print(f"bench: needs {', '.join(missing)}: pip install -e '.[test,bench]'", file=sys.stderr)
        return 2
    from bench.burst_report import plot_ack_rates
    from bench.report import plot, report

    if options.workload == "peer":
        return main_peer(options)
    plan = build_plan(options)
    # A bot killed mid-stream leaves the fake OpenAI writing to a closed socket; expected here.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    options.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results = asyncio.run(run_all(options, plan))
    runtime = time.monotonic() - started
    text = report(results, options, plan, runtime)
    print(text)
    report_path, chart_path, rates_path = result_paths(options)
    report_path.write_text(text + "\n", encoding="utf-8")
    written = [report_path]
    if results.acks or results.answers:
        plot(results, chart_path)
        written.append(chart_path)
    if plot_ack_rates(results.acks, rates_path):
        written.append(rates_path)
    progress(f"wrote {', '.join(map(str, written))}")
    if results.peer is not None and not options.quick:
        write_peer(results.peer, options, runtime, results.source_digests)
    return 1 if results.failures else 0


def main_peer(options: Options) -> int:
    """`--workload peer`: the peer workload alone, written to bench/results/peer.md."""
    options.out.mkdir(parents=True, exist_ok=True)
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    started = time.monotonic()
    first_digest = source_digest()
    peer = asyncio.run(peer_workload(options))
    text = write_peer(peer, options, time.monotonic() - started, (first_digest, source_digest()))
    print(text)
    failed = peer.bot.error or peer.baseline.error or peer.profile_error
    return 1 if failed else 0


def write_peer(
    peer: PeerResults, options: Options, runtime_s: float, digests: tuple[str, str]
) -> str:
    from bench.report import peer_report

    text = peer_report(peer, options.peer, runtime_s, digests)
    path = options.out / "peer.md"
    path.write_text(text + "\n", encoding="utf-8")
    progress(f"wrote {path}")
    return text


if __name__ == "__main__":
    sys.exit(main())
