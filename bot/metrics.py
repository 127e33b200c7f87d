"""Prometheus metrics (`GET /metrics`): answers, latencies, tokens and cost, errors, lag.

One registry for the process. Call sites are single lines that hand over what they measured
(`metrics.answered(outcome, complete_s)`); no state of a turn is kept here (a turn's timings
are its session's, `bot.turns.session.TurnTimings`). The site that serves them is
`bot.metrics_server` (aiohttp), which the maintenance commands do not import.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from bot.assistants.base import Usage

REGISTRY = CollectorRegistry()
_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60, 120)

ANSWERS = Counter(
    "bot_answers", "Finished turns, by how they ended", ["outcome"], registry=REGISTRY
)
FIRST_WORDS = Histogram(
    "bot_event_to_first_words_seconds",
    "From the Slack event to the first words of the answer visible in Slack",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
COMPLETE = Histogram(
    "bot_event_to_complete_answer_seconds",
    "From the Slack event to the complete answer in Slack",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
ACK = Histogram(
    "bot_event_ack_seconds",
    "Time to acknowledge a Slack request",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
    registry=REGISTRY,
)
WAITING = Gauge(
    "bot_conversations_waiting",
    "Conversations with a message or turn not yet answered (all processes)",
    registry=REGISTRY,
)
TOKENS = Counter(
    "bot_tokens", "Tokens the API reported, by model and kind", ["model", "kind"], registry=REGISTRY
)
COST = Counter(
    "bot_estimated_cost_usd",
    "Estimated cost of the answers, by model",
    ["model"],
    registry=REGISTRY,
)
OPENAI_ERRORS = Counter(
    "bot_openai_errors", "OpenAI calls that failed, by kind", ["kind"], registry=REGISTRY
)
SLACK_ERRORS = Counter(
    "bot_slack_errors", "Slack Web API errors, by Slack's error code", ["kind"], registry=REGISTRY
)
NO_TOKEN = Counter(
    "bot_turns_without_token",
    "Conversations not answered because no Slack token could be had for their workspace, "
    "by why (not_installed, refresh_refused)",
    ["reason"],
    registry=REGISTRY,
)
TOKEN_REFRESHES = Counter(
    "bot_token_refreshes",
    "Slack token refreshes (token rotation), by outcome (refreshed, refused, not_stored)",
    ["outcome"],
    registry=REGISTRY,
)
LEASE_CLAIMS = Counter(
    "bot_lease_claims",
    "Attempts to lease a conversation, by outcome: claimed; held_elsewhere (another process "
    "holds it: two processes went for the same work); lock_timeout (waited CLAIM_LOCK_WAIT on "
    "the row and gave up: a lease this process may have been able to take)",
    ["outcome"],
    registry=REGISTRY,
)
LEASE_CLAIM_WAIT = Histogram(
    "bot_lease_claim_seconds",
    "How long claiming a conversation's lease took, waiting on its row lock included",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
    registry=REGISTRY,
)
LEASES_LOST = Counter(
    "bot_leases_lost",
    "Conversations this process stopped working on because another process took the lease",
    registry=REGISTRY,
)
LOOP_LAG = Gauge(
    "bot_event_loop_lag_seconds",
    "How late the event loop ran a ready callback, sampled at scrape time",
    registry=REGISTRY,
)


def first_words(seconds: float) -> None:
    """The first words of an answer are on their way to Slack, `seconds` after the event."""
    FIRST_WORDS.observe(seconds)


def answered(outcome: str, complete_s: float | None) -> None:
    """Count a finished turn, and how long after the event it was complete, where known."""
    ANSWERS.labels(outcome=outcome).inc()
    if complete_s is not None:
        COMPLETE.observe(complete_s)


def usage(report: Usage, cost_usd: float | None) -> None:
    for kind, count in (
        ("input", report.input_tokens),
        ("cached_input", report.cached_input_tokens),
        ("output", report.output_tokens),
        ("reasoning", report.reasoning_tokens),
    ):
        TOKENS.labels(model=report.model, kind=kind).inc(count)
    if cost_usd is not None:
        COST.labels(model=report.model).inc(cost_usd)


def openai_error(kind: str) -> None:
    OPENAI_ERRORS.labels(kind=kind).inc()


def slack_error(kind: str) -> None:
    SLACK_ERRORS.labels(kind=kind).inc()


def no_token(reason: str) -> None:
    NO_TOKEN.labels(reason=reason).inc()


def token_refresh(outcome: str) -> None:
    TOKEN_REFRESHES.labels(outcome=outcome).inc()


def lease_claim(outcome: str, seconds: float) -> None:
    LEASE_CLAIMS.labels(outcome=outcome).inc()
    LEASE_CLAIM_WAIT.observe(seconds)


def lease_lost() -> None:
    LEASES_LOST.inc()


def ack_took(seconds: float) -> None:
    ACK.observe(seconds)
