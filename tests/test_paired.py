"""Intervals over problems (sparks.aggregate.paired): the formulas on hand-made tables, and the
machinery on simulated per-problem samples with known truth (coverage, and Holm's family-wise
rate under the null)."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from sparks.aggregate.claims import CONTRADICTED, REPRODUCED, adjust
from sparks.aggregate.paired import crossed, difference, per_problem
from sparks.stats import t_quantile


def values(per_problem_values: list[float]) -> pl.DataFrame:
    n = len(per_problem_values)
    return pl.DataFrame({"difficulty": ["hard"] * n, "sample_id": list(range(n)), "value": per_problem_values})


def test_a_problem_is_the_unit_and_conditions_are_paired():
    samples = pl.DataFrame(
        {"difficulty": ["easy"] * 6, "sample_id": [0, 0, 1, 1, 2, 2], "correct": [True, False, True, True, False, False]}
    )
    assert per_problem(samples).sort("sample_id")["value"].to_list() == [0.5, 1.0, 0.0]  # its samples averaged
    later = samples.with_columns(pl.lit(True).alias("correct")).filter(pl.col("sample_id") < 2)
    assert difference(per_problem(later), per_problem(samples)).sort("sample_id")["value"].to_list() == [0.5, 0.0]
    one = crossed([values([0.5, 0.0, 1.0, 0.5])])  # one replicate: the problems' spread, P - 1 degrees of freedom
    assert one.value == 0.5 and one.df == pytest.approx(3) and one.se == pytest.approx(math.sqrt(1 / 6 / 4))
    low, high = one.interval(bounds=(-9.0, 9.0))
    assert high - 0.5 == pytest.approx(t_quantile(3) * one.se) == pytest.approx(0.5 - low)
    assert one.interval() == (max(-1.0, low), 1.0)  # an accuracy change stays in [-1, 1]
    assert crossed([values([0.2, 0.2, 0.2])]).interval() == pytest.approx((0.2, 0.2)) and crossed([values([0.2] * 3)]).p < 1e-9
    with_draws = crossed([values([0.5, 0.0, 1.0, 0.5])], draws=[[0.9, 0.5]])  # plus the draws' variance over their number
    assert with_draws.se == pytest.approx(math.sqrt(1 / 24 + 0.08 / 2))


def test_replicates_and_problems_are_crossed():
    a, b = values([1.0, 0.0, 1.0, 1.0]), values([1.0, 0.0, 0.0, 1.0])
    both = crossed([a, b])
    replicate_term = np.var([0.75, 0.5], ddof=1) / 2
    problem_term = np.var([1.0, 0.0, 0.5, 1.0], ddof=1) / 4
    assert both.value == pytest.approx(0.625) and both.se == pytest.approx(math.sqrt(replicate_term + problem_term))
    assert crossed([a, values([1.0, 0.0])]).value == pytest.approx(0.5)  # the problems both answered only
    assert crossed([]).value is None and crossed([a, values([])]).value == pytest.approx(0.75)


def simulate(rng: np.random.Generator, n_replicates: int, effect: float, seed_sd: float, problems: int = 60) -> list:
    """One data set: per replicate, per-problem differences (final minus a shared base) of 4
    samples each; problems' logit difficulty N(0, 1.5), a replicate's own shift N(0, seed_sd)."""
    logit = rng.normal(0.0, 1.5, problems)
    base = (rng.random((problems, 4)) < 1 / (1 + np.exp(-logit[:, None]))).mean(1)
    out = []
    for _ in range(n_replicates):
        shifted = logit + effect + rng.normal(0.0, seed_sd)
        final = (rng.random((problems, 4)) < 1 / (1 + np.exp(-shifted[:, None]))).mean(1)
        out.append(values((final - base).tolist()))
    return out


def truth(effect: float, seed_sd: float) -> float:
    """The population's mean difference (problems and seeds as drawn), by a large sample."""
    rng = np.random.default_rng(12345)
    logit, shift = rng.normal(0.0, 1.5, 400_000), rng.normal(0.0, seed_sd, 400_000)
    return float(np.mean(1 / (1 + np.exp(-(logit + effect + shift))) - 1 / (1 + np.exp(-logit))))


@pytest.mark.parametrize("n", [1, 3, 5])
def test_intervals_over_problems_cover_the_truth(n):
    """400 simulated data sets (one replicate: no seed spread, which one run cannot measure): the
    95 % intervals cover the population's accuracy change in 93-97 %."""
    rng = np.random.default_rng(n)
    seed_sd = 0.0 if n == 1 else 0.4
    target, covered = truth(0.5, seed_sd), 0
    for _ in range(400):
        low, high = crossed(simulate(rng, n, 0.5, seed_sd)).interval()
        covered += low <= target <= high
    assert 0.93 <= covered / 400 <= 0.97


def test_holm_holds_the_family_rate_on_paired_claims():
    """Under the null (eleven paired claims with no effect, 3 replicates), Holm keeps the rate of
    a false 'reproduced' at or below 2.5 % and of any false verdict at or below 5 % (+ simulation error)."""
    rng = np.random.default_rng(7)
    false_up = false_any = 0
    for _ in range(200):
        family = [{"claim": "c", "p_value": crossed(simulate(rng, 3, 0.0, 0.4, problems=30)).p} for _ in range(11)]
        verdicts = [r["verdict"] for r in adjust(family)]
        false_up += REPRODUCED in verdicts
        false_any += REPRODUCED in verdicts or CONTRADICTED in verdicts
    assert false_up / 200 <= 0.025 + 0.02 and false_any / 200 <= 0.05 + 0.03
