"""The burst phase reads lease claims and answers from each bot process's /metrics: what
grew between two scrapes, summed over the processes; a bot without the lease counters
(an older commit under `--against`) shows as not counted rather than as zero."""

from __future__ import annotations

import pytest

from bench.burst import LeaseCounts, Samples, lease_counts


def sample(
    answers: float, claimed: float = 0, elsewhere: float = 0, fast: float = 0, lost: float = 0
) -> Samples:
    return {
        ("bot_answers_total", ("outcome=completed",)): answers,
        ("bot_lease_claims_total", ("outcome=claimed",)): claimed,
        ("bot_lease_claims_total", ("outcome=held_elsewhere",)): elsewhere,
        ("bot_lease_claims_total", ("outcome=lock_timeout",)): 0.0,
        ("bot_lease_claim_seconds_count", ()): claimed + elsewhere,
        ("bot_lease_claim_seconds_sum", ()): (claimed + elsewhere) * 0.002,
        ("bot_lease_claim_seconds_bucket", ("le=0.01",)): fast,
        ("bot_leases_lost_total", ()): lost,
    }


OLD_BOT = {("bot_answers_total", ("outcome=completed",)): 7.0}


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (
            [sample(1, claimed=1, fast=1)],
            [sample(11, claimed=11, fast=9)],
            LeaseCounts(
                (10.0,),
                {"claimed": 10.0, "held_elsewhere": 0.0, "lock_timeout": 0.0},
                claim_s=0.02,
                slow_claims=2.0,
                leases_lost=0.0,
            ),
        ),
        (
            [sample(1, claimed=1, fast=1), sample(1, claimed=1, fast=1)],
            [sample(6, claimed=6, elsewhere=3, fast=9), sample(5, claimed=5, fast=5, lost=1)],
            LeaseCounts(
                (5.0, 4.0),
                {"claimed": 9.0, "held_elsewhere": 3.0, "lock_timeout": 0.0},
                claim_s=0.024,
                slow_claims=0.0,
                leases_lost=1.0,
            ),
        ),
        ([{}], [OLD_BOT], LeaseCounts((7.0,), None)),
    ],
    ids=["one process", "two processes", "a bot without lease counters"],
)
def test_lease_counts_are_what_grew_over_the_burst(
    before: list[Samples], after: list[Samples], expected: LeaseCounts
) -> None:
    counts = lease_counts(before, after)
    assert counts.answers_by_process == expected.answers_by_process
    assert counts.claims == expected.claims
    if expected.claims is not None:
        assert counts.claim_s == pytest.approx(expected.claim_s)
        assert (counts.slow_claims, counts.leases_lost) == (
            expected.slow_claims,
            expected.leases_lost,
        )
