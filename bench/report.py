"""The Markdown report and the latency plot."""

from __future__ import annotations

import contextlib
import math
import os
import platform
import subprocess
import time
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.burst_report import burst_lines
from bench.peer import (
    ACK_P99_GOAL_S,
    BURST_WALL_GOAL_S,
    CPU_PER_ANSWER_GOAL_S,
    IDLE_CPU_GOAL_S_PER_S,
    LARGE_EXCESS_GOAL_S,
    PEAK_RSS_GOAL_MIB,
    PEER_DELTAS,
    PEER_MODEL_S,
    SLACK_CALLS_AIM,
    TAIL_S,
    PeerOptions,
    PeerResults,
    p50,
)
from bench.phases import (
    ACK_GOAL_P99_S,
    ACK_GOAL_RATE,
    LIGHT_RATE,
    SCALE_EXCESS_GOAL_S,
    SCALE_GOAL_SIZE,
    SCALE_RSS_GOAL_MB,
    AckResult,
    AnswerResult,
    FakeCost,
    ScaleResult,
    percentile,
)
from bench.rig import Config
from bot.settings import Settings

if TYPE_CHECKING:
    from bench.run import Options, Plan, Results

ROOT = Path(__file__).resolve().parent.parent


def ms(seconds: float) -> str:
    return "–" if math.isnan(seconds) else f"{seconds * 1000:.1f}"


def secs(seconds: float) -> str:
    return "–" if math.isnan(seconds) else f"{seconds:.2f}"


def p(values: list[float], q: float) -> str:
    return ms(percentile(values, q))


# --------------------------------------------------------------------------- header


def machine() -> str:
    """CPU model (from /proc/cpuinfo), cores, Python version and OS."""
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (
        f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def bot_revision() -> str:
    """The commit measured, flagged when bot/ has uncommitted changes (read-only git)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "diff", "--quiet", "HEAD", "--", "bot"], cwd=ROOT, capture_output=True
        ).returncode
    except OSError:
        return "unknown"
    return f"{head or 'unknown'}{' + uncommitted changes in bot/' if changed else ''}"


def default_setting(name: str) -> Any:
    return next(f.default for f in fields(Settings) if f.name == name)


def code_line(digests: tuple[str, str]) -> str:
    first, last = digests
    if first == last:
        return f"- Code: bot/ digest {first}, unchanged during the run"
    return (
        f"- **Code: bot/ was edited during the run** (digest {first} at the start, {last} at "
        "the end): bot processes started at different times may have run different code"
    )


def header(options: Options, plan: Plan, runtime_s: float, results: Results) -> list[str]:
    fakes = options.fakes
    load = results.load_average
    low, high = options.answer_model_s
    poll_initial = default_setting("poll_initial_s") * 1000
    poll_max = default_setting("poll_max_s") * 1000
    return [
        f"# Benchmark ({'quick' if options.quick else 'full'} run, "
        f"{time.strftime('%Y-%m-%d %H:%M')}, {runtime_s:.0f} s)",
        "",
        f"- Machine: {machine()}; load average at the start "
        f"{', '.join(f'{x:.2f}' for x in load)} (see *Machine noise* below)",
        f"- Bot: `python -m bot` (HTTP mode), commit {bot_revision()}; each bot process gets "
        "fresh fakes and a fresh database (SQLite file / PostgreSQL `bench_<uuid>`) and one "
        "warm-up question before anything is measured",
        code_line(results.source_digests),
        f"- Bot settings: the defaults (POLL_INITIAL_MS={poll_initial:g}, "
        f"POLL_MAX_MS={poll_max:g}, MAX_CONCURRENT_TURNS="
        f"{default_setting('max_concurrent_turns')}, LOG_LEVEL=INFO); naive = "
        "POLL_INITIAL_MS=POLL_MAX_MS=1000",
        f"- Fakes (asyncio, in the benchmark process): Slack latency "
        f"{fakes.slack_latency_s * 1000:g} ms, OpenAI latency {fakes.openai_latency_s * 1000:g} "
        f"ms, runs queued {fakes.queue_s * 1000:g} ms; model time {fakes.fast_model_s * 1000:g} "
        f"ms in ack phases, uniform {low:g}–{high:g} s in answer phases, "
        f"{options.scale_model_s:g} s in scale phases; `+webhooks` configurations: "
        f"OPENAI_WEBHOOK_SECRET set, the fake OpenAI POSTs each background response's end "
        f"{fakes.webhook_delay_s * 1000:g} ms after it (every 2nd event twice)",
        *(f"- Plan: {line}" for line in plan.describe()),
        "",
    ]


# --------------------------------------------------------------------------- tables


def ack_lines(acks: list[AckResult], options: Options) -> list[str]:
    lines = [
        f"## 1. Ack latency of POST /slack/events ({options.ack_seconds:g} s per rate, open loop)",
        "",
        "Each event is a new mention in its own channel, i.e. a new conversation, which the bot "
        f"answers with a {options.fakes.fast_model_s * 1000:g} ms model while the load runs. "
        f"Slack retries events not acked within 3 s; goal: p99 ≤ {ACK_GOAL_P99_S * 1000:g} ms "
        f"at {ACK_GOAL_RATE} events/s. The {LIGHT_RATE}/s rows are a light-load baseline "
        f"({options.light_acks} events) and the {ACK_GOAL_RATE}/s rows run on the same bot after "
        "its answer phase; other rates each get a fresh bot. *Answered/s*: answers in Slack from "
        "the first event until 1 s after the last, per second (at most events ÷ (duration + 1 "
        "s)); far below the event rate means the bot cannot keep up. *Loop lag* (the benchmark "
        "process's own event loop) and *sender late* (load generator behind its clock) show the "
        "measuring noise. The load generator holds at most 100 connections (one aiohttp "
        "session); when more events are pending, the wait for a connection counts as ack "
        "time, as it would for Slack.",
        "",
        "| Configuration | events/s | events | errors | p50 ms | p99 ms | max ms | goal | "
        "answered/s | loop lag p99 ms | sender late max ms |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in sorted(acks, key=lambda r: (r.config.label, r.rate)):
        p99 = percentile(r.latencies, 99)
        goal = "—"
        if r.rate == ACK_GOAL_RATE:
            goal = "✅" if p99 <= ACK_GOAL_P99_S and r.errors == 0 else "❌"
        lines.append(
            f"| {r.config.label} | {r.rate}{' (light)' if r.light else ''} | "
            f"{len(r.latencies) + r.errors} | {r.errors} | {p(r.latencies, 50)} | {ms(p99)} | "
            f"{ms(max(r.latencies, default=math.nan))} | {goal} | {r.answered_per_s:.1f} | "
            f"{ms(r.loop_lag_p99)} | {ms(r.generator_lag_max)} |"
        )
    return [*lines, ""]


def naive_of(answers: list[AnswerResult], config: Config) -> AnswerResult | None:
    return next((a for a in answers if a.naive and a.config == config), None)


def answer_lines(answers: list[AnswerResult], options: Options) -> list[str]:
    low, high = options.answer_model_s
    lines = [
        "## 2 & 5. Answer overhead: model finished → complete answer in Slack",
        "",
        f"{options.answers} questions per configuration ({options.naive_answers} for naive), one "
        f"every {options.answer_spacing_s * 1000:g} ms, model time uniform {low:g}–{high:g} s. "
        "Overhead = FakeOpenAI.completed_at → the Slack call that puts the complete answer in "
        "place (chat.update of the placeholder; for streams the final update or stopStream). "
        "Naive = the same bot with POLL_INITIAL_MS=POLL_MAX_MS=1000, a fixed 1 s poll like the "
        "SDK's create_and_poll. *Sign of life* = event sent → the bot's first message in the "
        "thread; *first words* = event sent → first answer text visible (streamed chunk or the "
        "whole answer; includes the model time).",
        "",
        "| Configuration | answers | p50 ms | p99 ms | max ms | naive p50 ms | naive p99 ms | "
        "naive ÷ ours (p50) | sign of life p50 ms | first words p50 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for ours in (a for a in answers if not a.naive):
        naive = naive_of(answers, ours.config)
        naive_over = naive.overheads if naive else []
        ours_p50 = percentile(ours.overheads, 50)
        ratio = percentile(naive_over, 50) / ours_p50 if naive_over and ours_p50 > 0 else math.nan
        missing = f" ({ours.missing} missing)" if ours.missing else ""
        lines.append(
            f"| {ours.config.label} | {len(ours.overheads)}{missing} | {ms(ours_p50)} | "
            f"{p(ours.overheads, 99)} | {ms(max(ours.overheads, default=math.nan))} | "
            f"{p(naive_over, 50)} | {p(naive_over, 99)} | "
            f"{'–' if math.isnan(ratio) else f'{ratio:.1f}×'} | "
            f"{p(ours.placeholder, 50)} | {p(ours.first_text, 50)} |"
        )
    return [*lines, ""]


def calls_lines(answers: list[AnswerResult]) -> list[str]:
    ours = [a for a in answers if not a.naive]
    if not ours:
        return []
    keys = sorted({key for a in answers for key in a.calls})
    lines = [
        "## 3. Calls per answer during the answer phase (ours / naive)",
        "",
        "users.info is cached per user by the bot; the askers rotate through 20 users.",
        "",
        "| Call | " + " | ".join(a.config.label for a in ours) + " |",
        "|---|" + "---:|" * len(ours),
    ]
    for key in [*keys, ""]:
        cells = []
        for answer in ours:
            naive = naive_of(answers, answer.config)
            cell = f"{calls_of(answer, key):.2f}"
            cells.append(cell + (f" / {calls_of(naive, key):.2f}" if naive else ""))
        lines.append(f"| {key or '**all**'} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def calls_of(answers: AnswerResult, key: str) -> float:
    """Calls per answer to `key`, or to everything when `key` is empty."""
    return answers.calls.get(key, 0.0) if key else sum(answers.calls.values())


def scale_lines(scales: list[ScaleResult], options: Options, plan: Plan) -> list[str]:
    lines = [
        "## 4. Scale: conversations started at the same moment",
        "",
        f"Model time {options.scale_model_s:g} s. Goal: {SCALE_GOAL_SIZE:,} at once under "
        f"{SCALE_RSS_GOAL_MB:g} MB RSS with every answer within model time + "
        f"{SCALE_EXCESS_GOAL_S:g} s. *Excess* = complete answer in Slack − burst start − model "
        f"time. {SCALE_GOAL_SIZE:,} runs on {plan.large.label} only, on a fresh bot; 100 runs on "
        "the configuration's main bot after its light-load acks. A phase waits at most model "
        "time + 0.06 s per conversation (20–30 s); later answers count as unanswered. CPU = bot "
        "process user+system seconds from the burst to the last answer, per answer.",
        "",
        "| Configuration | conversations | all answered after s | excess max s | "
        "excess p50 s | peak RSS MB (idle) | CPU ms/answer | burst ack p99 ms | goal |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in scales:
        excess_max = max(r.excess, default=math.nan)
        peak = r.peak_rss / 2**20
        ok = r.missing == 0 and excess_max <= SCALE_EXCESS_GOAL_S
        if r.size >= SCALE_GOAL_SIZE:
            ok = ok and peak < SCALE_RSS_GOAL_MB
        total = secs(r.total_s) if not r.missing else f"> {r.timeout_s:.0f}"
        missing = f" ({r.missing} unanswered)" if r.missing else ""
        lines.append(
            f"| {r.config.label} | {r.size}{missing} | {total} | {secs(excess_max)} | "
            f"{secs(percentile(r.excess, 50))} | {peak:.0f} ({r.idle_rss / 2**20:.0f}) | "
            f"{r.cpu_per_answer * 1000:.0f} | {ms(r.ack_p99)} | {'✅' if ok else '❌'} |"
        )
    return [*lines, ""]


def db_lines(results: Results) -> list[str]:
    if not results.db_activity:
        return []
    lines = [
        "## PostgreSQL activity per bot process",
        "",
        "From pg_stat_database of the bot's own database, over the process's whole life "
        "(migrations, warm-up and every phase it ran): connections opened, and transactions "
        "(commits + rollbacks: SQLAlchemy ends read-only sessions and returned connections with "
        "a ROLLBACK) per answer, where every question the process received was answered "
        "(the ack phases end with questions unanswered).",
        "",
        "| Configuration | bot process | questions | answered | connections opened | commits | "
        "rollbacks | transactions per answer |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for a in results.db_activity:
        complete = a.answered and a.answered == a.received
        per_answer = f"{(a.commits + a.rollbacks) / a.answered:.1f}" if complete else "–"
        lines.append(
            f"| {a.config.label} | {a.stage} | {a.received} | {a.answered} | {a.sessions} | "
            f"{a.commits} | {a.rollbacks} | {per_answer} |"
        )
    return [*lines, ""]


def fake_cost_lines(cost: FakeCost | None) -> list[str]:
    if cost is None:
        return []
    return [
        "## The fakes' own response time",
        "",
        "A trivial request from the benchmark process to each idle fake (subtract as needed).",
        "",
        "| Fake | request | p50 ms | p99 ms |",
        "|---|---|---:|---:|",
        f"| Slack | POST /api/auth.test | {p(cost.slack, 50)} | {p(cost.slack, 99)} |",
        f"| OpenAI | GET /v1/conversations/{{id}} | {p(cost.openai, 50)} | {p(cost.openai, 99)} |",
        "",
    ]


def noise_lines(results: Results) -> list[str]:
    """Per bot process: CPU the rest of the machine used meanwhile, to flag noisy rows."""
    if not results.noise:
        return []
    lines = [
        "## Machine noise",
        "",
        "CPU used meanwhile by processes other than the benchmark and its bots (PostgreSQL "
        "included, so postgres rows are never 0), and stolen by the hypervisor, in cores out of "
        f"{os.cpu_count()}. High values mean other work competed for the CPU during that stage.",
        "",
        "| Bot process | other processes (cores) | stolen (cores) |",
        "|---|---:|---:|",
    ]
    for stage, (others, stolen) in results.noise:
        lines.append(f"| {stage} | {others:.2f} | {stolen:.2f} |")
    return [*lines, ""]


def notes_lines(results: Results) -> list[str]:
    lines: list[str] = []
    if results.unavailable:
        lines += ["## Not measured", "", *(f"- {u}" for u in results.unavailable), ""]
    if results.failures:
        lines += ["## Failures", "", *(f"- {f}" for f in results.failures), ""]
    noted = {label: notes for label, notes in results.log_notes.items() if notes}
    if noted:
        lines += ["## Bot log: most frequent warnings and errors", ""]
        for label, notes in noted.items():
            lines += [f"- {label}:", *(f"  - {note}" for note in notes)]
        lines.append("")
    return lines


def burst_header(options: Options, runtime_s: float, results: Results) -> list[str]:
    against = f" --against {options.against}" if options.against else ""
    return [
        f"# Benchmark: burst and scale-out ({time.strftime('%Y-%m-%d %H:%M')}, {runtime_s:.0f} s)",
        "",
        f"- Machine: {machine()}; load average at the start "
        f"{', '.join(f'{x:.2f}' for x in results.load_average)} (see *Machine noise* below)",
        f"- Bot: `python -m bot` (HTTP mode, its defaults), commit {bot_revision()}",
        code_line(results.source_digests),
        f"- Command: `python -m bench.run --workload burst --burst {options.burst} "
        f"--burst-processes {','.join(map(str, options.burst_processes))} "
        f"--steady-s {options.steady_s:g}{against}`",
        "",
    ]


def report(results: Results, options: Options, plan: Plan, runtime_s: float) -> str:
    if options.workload == "burst":
        return "\n".join(
            [
                *burst_header(options, runtime_s, results),
                *burst_lines(results.bursts, options),
                *db_lines(results),
                *noise_lines(results),
                *notes_lines(results),
            ]
        )
    return "\n".join(
        [
            *header(options, plan, runtime_s, results),
            *ack_lines(results.acks, options),
            *answer_lines(results.answers, options),
            *calls_lines(results.answers),
            *scale_lines(results.scales, options, plan),
            *burst_lines(results.bursts, options),
            *db_lines(results),
            *(peer_lines(results.peer, options.peer, results) if results.peer else []),
            *fake_cost_lines(results.fake_cost),
            *noise_lines(results),
            *notes_lines(results),
        ]
    )


# --------------------------------------------------------------------------- plot


def short_label(config: Config) -> str:
    return f"{config.backend[:3]}·{config.database[:2]}·{config.delivery[:2]}"


def plot(results: Results, path: Path) -> None:
    """Boxplots (whiskers p1–p99) of ack latency per rate, and of answer overhead."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acks = sorted((r for r in results.acks if r.latencies), key=lambda r: (r.config.label, r.rate))
    answers = [a for a in results.answers if a.overheads]
    figure, (left, right) = plt.subplots(
        1, 2, figsize=(max(12, 0.7 * (len(acks) + len(answers))), 6)
    )
    if acks:
        left.boxplot([[v * 1000 for v in r.latencies] for r in acks], whis=(1, 99), sym="")
        left.set_xticks(
            range(1, len(acks) + 1), [f"{short_label(r.config)}\n{r.rate}/s" for r in acks]
        )
        left.axhline(ACK_GOAL_P99_S * 1000, color="red", linestyle="--", linewidth=1)
        left.set_yscale("log")
    left.set_title("Ack latency, POST /slack/events (ms, log; red: 50 ms goal)")
    left.tick_params(axis="x", labelsize=7, labelrotation=90)
    if answers:
        right.boxplot([[v * 1000 for v in a.overheads] for a in answers], whis=(1, 99))
        right.set_xticks(
            range(1, len(answers) + 1),
            [f"{short_label(a.config)}\n{'naive' if a.naive else 'ours'}" for a in answers],
        )
    right.set_title("Answer overhead: model finished → answer in Slack (ms)")
    right.tick_params(axis="x", labelsize=7, labelrotation=90)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# --------------------------------------------------------------------------- peer workload


def _ratio(ours: float, theirs: float) -> str:
    if math.isnan(ours) or math.isnan(theirs) or theirs <= 0:
        return "–"
    return f"{ours / theirs:.2f}×"


def _met(value: float, goal: float) -> str:
    return "–" if math.isnan(value) else ("✅" if value <= goal else "❌")


def peer_lines(
    peer: PeerResults, peer_options: PeerOptions, results: Results | None = None
) -> list[str]:
    """Issue 12's table: the bot beside the baseline bot, against the targets."""
    bot, base = peer.bot, peer.baseline
    acks_200 = [a for a in (results.acks if results else []) if a.rate == ACK_GOAL_RATE]
    large = [s for s in (results.scales if results else []) if s.size >= SCALE_GOAL_SIZE]

    def row(
        figure: str, unit_scale: float, fmt: str, ours: float, theirs: float, goal: str, met: str
    ) -> str:
        def cell(value: float) -> str:
            return "–" if math.isnan(value) else format(value * unit_scale, fmt)

        return (
            f"| {figure} | {goal} | {cell(ours)} | {cell(theirs)} | {_ratio(ours, theirs)} | "
            f"{met} |"
        )

    mib = 1 / 2**20
    lines = [
        "## Peer workload: the bot beside a minimal baseline bot (issue 12)",
        "",
        f"Socket Mode, Responses API, a {PEER_MODEL_S:g} s model streaming {PEER_DELTAS} deltas; "
        f"after one warm-up question, {peer_options.idle_s:g} s idle, {peer_options.sequential} "
        f"mentions one after another, then {peer_options.burst} at once. The bot runs with its "
        "defaults (DELIVERY=stream, SQLite); the baseline (bench/baseline_bot.py) is slack-bolt "
        "in Socket Mode answering `app_mention` with one `responses.stream` shown through "
        "chat.startStream/appendStream/stopStream, with no storage. CPU = the process's "
        f"user+system time from the first send until every answer is in Slack + {TAIL_S:g} s, "
        "per answer; peak RSS sampled every 50 ms from the warm-up on; event → answer = socket "
        "envelope sent → the Slack call completing the answer. *Ratio* = bot ÷ baseline.",
        "",
        "| figure | target | bot | baseline | ratio | met |",
        "|---|---|---:|---:|---:|---|",
        row(
            f"CPU per answer, {peer_options.burst} at once (ms)",
            1000,
            ".1f",
            bot.burst_cpu_per_answer,
            base.burst_cpu_per_answer,
            f"≤ {CPU_PER_ANSWER_GOAL_S * 1000:g}",
            _met(bot.burst_cpu_per_answer, CPU_PER_ANSWER_GOAL_S),
        ),
        row(
            "CPU per answer, one at a time (ms)",
            1000,
            ".1f",
            bot.sequential_cpu_per_answer,
            base.sequential_cpu_per_answer,
            f"≤ {CPU_PER_ANSWER_GOAL_S * 1000:g}",
            _met(bot.sequential_cpu_per_answer, CPU_PER_ANSWER_GOAL_S),
        ),
        row(
            "idle CPU (ms per second)",
            1000,
            ".2f",
            bot.idle_cpu_s_per_s,
            base.idle_cpu_s_per_s,
            f"≤ {IDLE_CPU_GOAL_S_PER_S * 1000:g}",
            _met(bot.idle_cpu_s_per_s, IDLE_CPU_GOAL_S_PER_S),
        ),
        row(
            "peak RSS (MiB)",
            mib,
            ".0f",
            float(bot.peak_rss or math.nan),
            float(base.peak_rss or math.nan),
            f"≤ {PEAK_RSS_GOAL_MIB:g}",
            _met(bot.peak_rss * mib if bot.peak_rss else math.nan, PEAK_RSS_GOAL_MIB),
        ),
        row(
            f"{peer_options.burst} at once, wall (s)",
            1,
            ".2f",
            bot.burst_wall_s,
            base.burst_wall_s,
            f"≤ {BURST_WALL_GOAL_S:g}",
            _met(bot.burst_wall_s, BURST_WALL_GOAL_S),
        ),
        row(
            "event → answer p50, one at a time (s)",
            1,
            ".2f",
            p50(bot.sequential_latencies),
            p50(base.sequential_latencies),
            "–",
            "–",
        ),
        row(
            "event → answer max, one at a time (s)",
            1,
            ".2f",
            max(bot.sequential_latencies, default=math.nan),
            max(base.sequential_latencies, default=math.nan),
            "–",
            "–",
        ),
        row(
            f"event → answer p50, {peer_options.burst} at once (s)",
            1,
            ".2f",
            p50(bot.burst_latencies),
            p50(base.burst_latencies),
            "–",
            "–",
        ),
        row(
            f"event → answer max, {peer_options.burst} at once (s)",
            1,
            ".2f",
            max(bot.burst_latencies, default=math.nan),
            max(base.burst_latencies, default=math.nan),
            "–",
            "–",
        ),
        row(
            "socket ack p99 (ms)",
            1000,
            ".1f",
            percentile(bot.acks, 99),
            percentile(base.acks, 99),
            "–",
            "–",
        ),
        row(
            "Slack calls per answer",
            1,
            ".2f",
            bot.calls_to("Slack"),
            base.calls_to("Slack"),
            f"≤ {SLACK_CALLS_AIM:g} (aim)",
            _met(bot.calls_to("Slack"), SLACK_CALLS_AIM),
        ),
        row(
            "OpenAI calls per answer",
            1,
            ".2f",
            bot.calls_to("OpenAI"),
            base.calls_to("OpenAI"),
            "–",
            "–",
        ),
    ]
    if acks_200:
        worst = max(percentile(a.latencies, 99) for a in acks_200)
        lines.append(
            f"| ack p99 at {ACK_GOAL_RATE} events/s, HTTP (ms; worst configuration, section 1) "
            f"| ≤ {ACK_P99_GOAL_S * 1000:g} | {worst * 1000:.1f} | – | – | "
            f"{_met(worst, ACK_P99_GOAL_S)} |"
        )
    else:
        lines.append(
            f"| ack p99 at {ACK_GOAL_RATE} events/s, HTTP (ms) | ≤ {ACK_P99_GOAL_S * 1000:g} | "
            "not run (full run: section 1) | – | – | – |"
        )
    if large:
        excess = max((max(s.excess, default=math.nan) for s in large), default=math.nan)
        missing = sum(s.missing for s in large)
        met = "❌" if missing else _met(excess, LARGE_EXCESS_GOAL_S)
        unanswered = f" ({missing} unanswered)" if missing else ""
        lines.append(
            f"| {SCALE_GOAL_SIZE:,} at once: answer − model time, max (s; section 4) | "
            f"≤ {LARGE_EXCESS_GOAL_S:g} | {secs(excess)}{unanswered}"
            f" | – | – | {met} |"
        )
    else:
        lines.append(
            f"| {SCALE_GOAL_SIZE:,} at once: answer − model time, max (s) | "
            f"≤ {LARGE_EXCESS_GOAL_S:g} | not run (full run: section 4) | – | – | – |"
        )
    lines.append("")
    for result in (bot, base):
        if result.error or result.missing:
            lines.append(
                f"- {result.name}: {result.missing} unanswered"
                + (f"; failed: {result.error}" if result.error else "")
            )
    lines += ["", "Calls per answer by method (sequential and burst together):", ""]
    keys = sorted({*bot.calls, *base.calls})
    lines += ["| call | bot | baseline |", "|---|---:|---:|"]
    lines += [
        f"| {key} | {bot.calls.get(key, 0.0):.2f} | {base.calls.get(key, 0.0):.2f} |"
        for key in keys
    ]
    lines.append("")
    if peer.profiles:
        links = ", ".join(f"[{path.name}]({path.name})" for path in peer.profiles)
        lines += [
            "Profiles of the bot (pyinstrument, a separate profiled process; "
            f"{peer_options.idle_s:g} s idle and the burst): {links}.",
            "",
        ]
    if peer.sql_per_answer is not None:
        statements, commits = peer.sql_per_answer
        lines += [
            f"SQL per answer (the profiled burst, every engine): {statements:.1f} statements, "
            f"{commits:.1f} commits.",
            "",
        ]
    if peer.profile_error:
        lines += [f"Profiling failed: {peer.profile_error}", ""]
    return lines + previous_lines(peer)


def previous_lines(peer: PeerResults) -> list[str]:
    """`--against <ref>`: the bot beside the bot at that commit, as ratios."""
    bot, old = peer.bot, peer.previous
    if old is None:
        return []
    figures = [
        ("CPU per answer, burst (ms)", 1000, bot.burst_cpu_per_answer, old.burst_cpu_per_answer),
        (
            "CPU per answer, one at a time (ms)",
            1000,
            bot.sequential_cpu_per_answer,
            old.sequential_cpu_per_answer,
        ),
        ("idle CPU (ms per second)", 1000, bot.idle_cpu_s_per_s, old.idle_cpu_s_per_s),
        ("peak RSS (MiB)", 1 / 2**20, float(bot.peak_rss or "nan"), float(old.peak_rss or "nan")),
        ("burst wall (s)", 1, bot.burst_wall_s, old.burst_wall_s),
        (
            "event → answer p50, one at a time (s)",
            1,
            p50(bot.sequential_latencies),
            p50(old.sequential_latencies),
        ),
        ("Slack calls per answer", 1, bot.calls_to("Slack"), old.calls_to("Slack")),
        ("OpenAI calls per answer", 1, bot.calls_to("OpenAI"), old.calls_to("OpenAI")),
    ]

    def cell(value: float, scale: float) -> str:
        return "–" if math.isnan(value) else f"{value * scale:.2f}"

    lines = [
        f"The bot beside itself at {old.name} (built from git, measured the same way in the "
        "same run); *ratio* = this checkout ÷ previous, above 1× is worse:",
        "",
        f"| figure | this checkout | {old.name} | ratio |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {name} | {cell(ours, scale)} | {cell(theirs, scale)} | {_ratio(ours, theirs)} |"
        for name, scale, ours, theirs in figures
    ]
    if old.error or old.missing:
        lines.append(f"\n- {old.name}: {old.missing} unanswered; {old.error or ''}")
    return [*lines, ""]


def peer_report(
    peer: PeerResults, peer_options: PeerOptions, runtime_s: float, digests: tuple[str, str]
) -> str:
    return "\n".join(
        [
            f"# Benchmark: peer workload ({time.strftime('%Y-%m-%d %H:%M')}, {runtime_s:.0f} s)",
            "",
            f"- Machine: {machine()}; load average at the start "
            f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}",
            f"- Bot: commit {bot_revision()}",
            code_line(digests),
            "- Command: `python -m bench.run --workload peer"
            f"{' --profile' if peer.profiles else ''}`",
            "",
            *peer_lines(peer, peer_options),
        ]
    )
