"""The burst/scale-out section of the report, and the plot of ack latency against event rate."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bench.against import THIS_CHECKOUT
from bench.burst import (
    ACK_THROUGHOUT_GOAL_S,
    BURST_RATE_GOAL,
    SCALE_OUT_CPU_GOAL,
    SLOW_CLAIM_S,
    BurstResult,
)
from bench.phases import ACK_GOAL_P99_S, AckResult, percentile

if TYPE_CHECKING:
    from bench.run import Options


def _ms(seconds: float) -> str:
    return "–" if math.isnan(seconds) else f"{seconds * 1000:.1f}"


def _pair(values: list[float]) -> str:
    return f"{_ms(percentile(values, 50))} / {_ms(percentile(values, 99))}"


def _ratio(ours: float, theirs: float) -> float:
    return math.nan if math.isnan(ours) or math.isnan(theirs) or theirs <= 0 else ours / theirs


def _x(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.2f}×"


def _met(ok: bool | None) -> str:
    return "–" if ok is None else ("✅" if ok else "❌")


def _count(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.0f}"


def burst_row(r: BurstResult) -> str:
    exact = r.missing == 0 and r.duplicates == 0
    ratio_ok = None if math.isnan(r.ratio) else r.ratio >= BURST_RATE_GOAL
    throughout = percentile(r.acks_throughout, 99)
    ack_ok = None if math.isnan(throughout) else throughout <= ACK_THROUGHOUT_GOAL_S
    counts = r.counts
    if counts.claims is None:
        claims = "not counted by this bot"
        waits = "–"
    else:
        claims = " / ".join(_count(counts.claims[o]) for o in counts.claims)
        waits = f"{_count(counts.slow_claims)} ({counts.claim_s * 1000:.0f} ms)"
    per_process = " / ".join(_count(n) for n in counts.answers_by_process)
    wall = f"{r.burst_wall_s:.1f}" if not r.missing else f"> {r.timeout_s:.0f}"
    delivery = f"{r.ack_errors} / {r.retries} / {r.undelivered}"
    return (
        f"| {r.config.label} | {r.bot} | {r.size} | {r.missing} / {r.duplicates} "
        f"{_met(exact)} | {r.steady_per_s:.1f} | {r.burst_per_s:.1f} | {_x(r.ratio)} "
        f"{_met(ratio_ok)} | {wall} | {_pair(r.burst_acks)} | {delivery} | "
        f"{_pair(r.acks_throughout)} "
        f"{_met(ack_ok)} | {r.steady_cpu_per_answer * 1000:.1f} / {r.cpu_per_answer * 1000:.1f} | "
        f"{per_process} | {claims} | {waits} | {_count(counts.leases_lost)} |"
    )


def scale_out_lines(bursts: Sequence[BurstResult]) -> list[str]:
    """Per bot: two processes beside one (CPU per answer and answers/s)."""
    lines: list[str] = []
    for bot in dict.fromkeys(r.bot for r in bursts):
        one = next((r for r in bursts if r.bot == bot and r.config.processes == 1), None)
        two = next((r for r in bursts if r.bot == bot and r.config.processes == 2), None)
        if one is None or two is None:
            continue
        cpu = _ratio(two.cpu_per_answer, one.cpu_per_answer)
        lines.append(
            f"| {bot} | {one.cpu_per_answer * 1000:.1f} | {two.cpu_per_answer * 1000:.1f} | "
            f"{_x(cpu)} {_met(None if math.isnan(cpu) else cpu <= SCALE_OUT_CPU_GOAL)} | "
            f"{one.steady_per_s:.1f} → {two.steady_per_s:.1f} | "
            f"{one.burst_per_s:.1f} → {two.burst_per_s:.1f} |"
        )
    if not lines:
        return []
    return [
        "",
        f"Scale-out: two processes beside one (target: CPU per answer summed over both ≤ "
        f"{SCALE_OUT_CPU_GOAL:g}× one process's). On this 2-core machine the fakes, PostgreSQL "
        "and the bots share the cores, so the rates alone cannot show the scaling.",
        "",
        "| bot | CPU ms/answer, 1 process | 2 processes | ratio | steady answers/s, 1 → 2 | "
        "burst answers/s, 1 → 2 |",
        "|---|---:|---:|---:|---:|---:|",
        *lines,
    ]


def against_lines(bursts: Sequence[BurstResult]) -> list[str]:
    """This checkout ÷ the `--against` bot, configuration by configuration."""
    lines: list[str] = []
    for ours in (r for r in bursts if r.bot == THIS_CHECKOUT):
        for theirs in (r for r in bursts if r.bot != THIS_CHECKOUT and r.config == ours.config):
            acks = _ratio(
                percentile(ours.acks_throughout, 99), percentile(theirs.acks_throughout, 99)
            )
            lines.append(
                f"| {ours.config.label} | {theirs.bot} | "
                f"{_x(_ratio(ours.steady_per_s, theirs.steady_per_s))} | "
                f"{_x(_ratio(ours.burst_per_s, theirs.burst_per_s))} | "
                f"{_x(_ratio(ours.cpu_per_answer, theirs.cpu_per_answer))} | "
                f"{_x(acks)} |"
            )
    if not lines:
        return []
    return [
        "",
        "This checkout ÷ the previous bot (built from git in the same run; above 1× is more "
        "for rates, worse for CPU and acks):",
        "",
        "| Configuration | against | steady answers/s | burst answers/s | CPU per answer | "
        "acks throughout p99 |",
        "|---|---|---:|---:|---:|---:|",
        *lines,
    ]


def burst_lines(bursts: Sequence[BurstResult], options: Options) -> list[str]:
    if not bursts:
        return []
    return [
        "## Burst and scale-out on PostgreSQL (issue 19)",
        "",
        f"One PostgreSQL database, one or two bot processes (×2: each on its own PORT, events "
        f"round-robin over them), model time {options.fakes.fast_model_s * 1000:g} ms so the "
        f"bot's CPU sets the pace. *Steady*: a closed loop of {options.steady_concurrency} "
        f"askers for {options.steady_s:g} s, each asking again once answered: the answers/s the "
        f"bot sustains. *Burst*: then {options.burst} new conversations POSTed at the same "
        f"moment, one connection each, while a probe sends {options.probe_rate:g} more per "
        "second until the last answer, every event delivered as Slack does (not acked with 200 "
        "within 3 s: delivered again after 1 s, up to 3 times; acks count the first attempt, "
        "a timed-out one as 3 s); burst answers/s = every answer in Slack from the burst's "
        "start to its last answer (probes included) per second. *Exactly once*: unanswered / "
        "conversations with more than one bot message, in the fake Slack. *Acks throughout*: the "
        f"probes' acks (target p99 ≤ {ACK_THROUGHOUT_GOAL_S * 1000:g} ms). CPU per answer: "
        "user+system of every bot process, summed. *Answers per process*, *claims* and *lease "
        "waits* are read from each process's /metrics (METRICS_PORT) before and after the burst: "
        "lease claims claimed / held elsewhere (the other process got there first) / "
        f"lock timeout (gave up waiting on the row); claims slower than {SLOW_CLAIM_S * 1000:g} "
        "ms (total time claiming); leases lost to the other process.",
        "",
        f"| Configuration | bot | at once | unanswered / duplicated | steady answers/s | burst "
        f"answers/s | burst ÷ steady (≥ {BURST_RATE_GOAL:g}) | all answered after s | burst "
        "acks p50 / p99 ms | not acked in 3 s / retries / never acked | acks throughout p50 / "
        "p99 ms | CPU ms/answer steady / burst | answers per process | claims | slow claims "
        "(time) | leases lost |",
        "|---|---|---:|---|---:|---:|---|---:|---:|---:|---|---:|---:|---:|---:|---:|",
        *(burst_row(r) for r in bursts),
        *scale_out_lines(bursts),
        *against_lines(bursts),
        "",
    ]


# --------------------------------------------------------------------------- plot


def plot_ack_rates(acks: Sequence[AckResult], path: Path) -> bool:
    """Ack latency p50 and p99 against event rate, a line per database and process count
    (responses·poll, no webhooks); False (nothing written) when no ack phase ran."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, list[AckResult]] = {}
    for result in acks:
        config = result.config
        if config.backend != "responses" or config.delivery != "poll" or config.webhooks:
            continue
        if not result.latencies:
            continue
        name = f"{'SQLite' if config.database == 'sqlite' else 'PostgreSQL'}, " + (
            f"{config.processes} processes" if config.processes > 1 else "1 process"
        )
        series.setdefault(name, []).append(result)
    if not series:
        return False
    figure, axis = plt.subplots(figsize=(9, 5.5))
    rates_seen: set[int] = set()
    for index, (name, results) in enumerate(sorted(series.items())):
        ordered = sorted(results, key=lambda r: r.rate)
        rates = [r.rate for r in ordered]
        rates_seen.update(rates)
        color = f"C{index}"
        axis.plot(
            rates,
            [percentile(r.latencies, 99) * 1000 for r in ordered],
            marker="o",
            color=color,
            label=f"{name}: p99",
        )
        axis.plot(
            rates,
            [percentile(r.latencies, 50) * 1000 for r in ordered],
            marker=".",
            linestyle=":",
            color=color,
            label=f"{name}: p50",
        )
    axis.axhline(ACK_GOAL_P99_S * 1000, color="red", linestyle="--", linewidth=1)
    axis.axhline(ACK_THROUGHOUT_GOAL_S * 1000, color="orange", linestyle="--", linewidth=1)
    axis.set_xscale("log")
    axis.set_xticks(sorted(rates_seen), [str(rate) for rate in sorted(rates_seen)])
    axis.set_yscale("log")
    axis.set_xlabel("events/s (new conversations, open loop)")
    axis.set_ylabel("ack latency, ms (log)")
    axis.set_title("Ack latency against event rate (red: 50 ms p99 goal; orange: 100 ms)")
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True
