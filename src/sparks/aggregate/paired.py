"""How sparks puts an interval on an accuracy: problems are the unit, conditions are paired,
replicates and problems are crossed. Every accuracy in the claims and the replicates' accuracy
table goes through :func:`crossed`; the report's terms say it in a line (``sparks.registry.PAIRED_METHOD``).

- **Problems, not samples.** A problem's value is the mean over its samples (its n answers are
  not independent draws: they share the problem), so the unit of every interval is the problem.
- **Paired.** Two conditions that answered the same problems with the same seeds (the base and
  the final checkpoint; an intervened model, the unmodified one and a control) are compared
  problem by problem: the value is the mean of per-problem differences, whose error is smaller
  than the two accuracies' errors added when problems vary more than conditions.
- **Crossed, with replicates.** Replicates of a run answer the same evaluation problems, so the
  problems' error does not average away over replicates. With R replicates x P problems, the
  variance of the grand mean is estimated from the two-way table's mean squares as
  (MS_replicates + MS_problems - MS_residual) / (R P), at least MS_residual / (R P), unbiased for
  var_replicate / R + var_problem / P + var_noise / (R P); degrees of freedom by Satterthwaite.
  One replicate: the problems' variance alone (P - 1 degrees of freedom); the seed's is unmeasured.
- **Controls that vary.** A control's per-problem value is the mean over its draws of heads. With
  replicates, draws are seeded by replicate, so the replicates' spread carries the draws'; with one,
  the variance between draws over their number is added (its own D - 1 degrees of freedom).

The interval is Student t with those degrees of freedom, and the one-sided p-value (against a
value <= 0) is read from the same t, so the verdicts and the intervals cannot disagree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from sparks.stats import t_quantile, t_sf

KEYS = ("difficulty", "sample_id")  # a problem


@dataclass(frozen=True)
class Estimate:
    """A mean with its standard error and t degrees of freedom (None: no interval)."""

    value: float | None
    se: float | None = None
    df: float | None = None
    n_replicates: int = 0

    def interval(self, bounds: tuple[float, float] = (-1.0, 1.0)) -> tuple[float | None, float | None]:
        """The 95 % t interval, clipped to ``bounds`` (an accuracy or its change)."""
        if self.value is None or self.se is None:
            return None, None
        half = _quantile(self.df) * self.se
        return max(bounds[0], self.value - half), min(bounds[1], self.value + half)

    @property
    def p(self) -> float | None:
        """One-sided p-value against value <= 0 (no spread at all: the sign alone)."""
        if self.value is None or self.se is None:
            return None
        if self.se <= 0:
            return 0.0 if self.value > 0 else 1.0 if self.value < 0 else 0.5
        return t_sf(self.value / self.se, self.df)


def _quantile(df: float | None) -> float:
    return 1.96 if df is None else t_quantile(max(1, math.floor(df)))


def per_problem(samples: pl.DataFrame, column: str = "correct") -> pl.DataFrame:
    """One row per problem (KEYS): ``value``, the mean of ``column`` over its samples."""
    return samples.group_by(KEYS).agg(pl.col(column).cast(pl.Float64).mean().alias("value"))


def difference(a: pl.DataFrame, b: pl.DataFrame) -> pl.DataFrame:
    """Per problem both answered: ``a``'s value minus ``b``'s (per_problem tables)."""
    joined = a.join(b, on=KEYS, suffix="_b")
    return joined.select(*KEYS, (pl.col("value") - pl.col("value_b")).alias("value"))


def crossed(by_replicate: Sequence[pl.DataFrame], draws: Sequence[Sequence[float]] | None = None) -> Estimate:
    """The mean of per-problem values (per_problem or difference tables, one per replicate) over
    the problems every replicate has, with its crossed-design error (the module's docstring).
    ``draws``: per replicate, a control's value in each of its draws (mean over problems); their
    spread is added with one replicate."""
    tables = [t for t in by_replicate if not t.is_empty()]
    if not tables:
        return Estimate(None)
    shared = tables[0].select(KEYS)
    for t in tables[1:]:
        shared = shared.join(t.select(KEYS), on=KEYS)
    if shared.is_empty():
        return Estimate(None)
    matrix = [shared.join(t, on=KEYS, how="left").sort(KEYS)["value"].to_list() for t in tables]
    n_rep, n_prob = len(matrix), len(matrix[0])
    grand = sum(map(sum, matrix)) / (n_rep * n_prob)
    prob_means = [sum(row[i] for row in matrix) / n_rep for i in range(n_prob)]
    if n_rep == 1:
        terms = [(_variance(prob_means) / n_prob, n_prob - 1)] if n_prob > 1 else []
        if draws and len(draws[0]) > 1:
            terms.append((_variance(draws[0]) / len(draws[0]), len(draws[0]) - 1))
        if not terms:
            return Estimate(grand, None, None, 1)
        variance = sum(v for v, _ in terms)
        return Estimate(grand, math.sqrt(variance), _satterthwaite(variance, terms), 1)
    rep_means = [sum(row) / n_prob for row in matrix]
    # each term holds the samples' noise once: counted twice, a little wider than the unbiased mean
    # squares, whose Satterthwaite interval covers too little with 2 or 3 replicates (tests/test_paired.py)
    terms = [(_variance(rep_means) / n_rep, n_rep - 1), (_variance(prob_means) / n_prob, n_prob - 1)]
    variance = sum(v for v, _ in terms)
    df = _satterthwaite(variance, terms)
    if terms[0][0] >= terms[1][0] and df is not None:  # the replicates' few degrees of freedom dominate: theirs
        df = n_rep - 1
    return Estimate(grand, math.sqrt(variance), df, n_rep)


def _variance(values: Sequence[float]) -> float:
    n = len(values)
    if n < 2:
        return 0.0
    mean = sum(values) / n
    return sum((v - mean) ** 2 for v in values) / (n - 1)


def _satterthwaite(total: float, terms: Sequence[tuple[float, float]]) -> float | None:
    """Satterthwaite's degrees of freedom of ``total``, a combination (coefficients +-1) of mean
    squares ``terms`` (value, df); None when none has a spread (the sign decides)."""
    denominator = sum(v * v / df for v, df in terms if df > 0)
    if denominator <= 0 or total <= 0:
        return None
    return total**2 / denominator
