"""Intervals over a few values (replicates): the one place sparks computes a Student t interval.

Importing this module pulls in nothing heavy (the report reads it as well as the stages).
"""

from __future__ import annotations

import math

_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}
_T975_LARGE = ((15, 2.131), (20, 2.086), (30, 2.042), (60, 2.000), (120, 1.980))


def t_quantile(df: int) -> float:
    """The 97.5 % quantile of Student's t with ``df`` degrees of freedom (tabled; between table rows
    the smaller df's value, which is the wider interval)."""
    if df < 1:
        raise ValueError(f"t quantile needs df >= 1 (got {df})")
    if df in _T975:
        return _T975[df]
    value = _T975[10]
    for bound, quantile in _T975_LARGE:
        if df >= bound:
            value = quantile
    return value if df < 1000 else 1.960


def mean_interval(values: list[float], floor_sd: float = 0.0) -> tuple[float | None, float | None, float | None]:
    """(mean, low, high): the mean of ``values`` (None dropped) and its 95 % t interval; the
    interval is None for fewer than two values, the mean None for none.

    ``floor_sd``: the least standard deviation to assume. Replicates differ at least by the
    sampling error of each value (an accuracy over a few problems), which two or three discrete
    values can hide by chance: three replicates scoring 0.750 each are not an exact result.
    A single value gets the normal interval of ``floor_sd`` alone (a run without replicates:
    sampling error only, the spread between replicates unmeasured), or none without a floor.
    """
    values = [float(v) for v in values if v is not None]
    n = len(values)
    if n == 0:
        return None, None, None
    mean = sum(values) / n
    if n < 2:  # one replicate: its own sampling error is the only spread known
        half = 1.96 * floor_sd
        return (mean, mean - half, mean + half) if floor_sd > 0 else (mean, None, None)
    sd = max(math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)), floor_sd)
    half = t_quantile(n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularized incomplete beta function (modified Lentz)."""
    tiny, c, d = 1e-300, 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    out = d
    for m in range(1, 300):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            out *= d * c
        if abs(d * c - 1.0) < 1e-14:
            break
    return out


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularized incomplete beta function."""
    if x <= 0 or x >= 1:
        return 0.0 if x <= 0 else 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(1 - x))
    if x < (a + 1) / (a + b + 2):
        return front * _beta_fraction(a, b, x) / a
    return 1.0 - front * _beta_fraction(b, a, 1 - x) / b


def t_sf(t: float, df: int | None) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom (None: the standard normal)."""
    if df is None:
        return 0.5 * math.erfc(t / math.sqrt(2))
    tail = 0.5 * _incomplete_beta(df / 2, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1.0 - tail


def interval_p(value: float | None, low: float | None, high: float | None, n: int) -> float | None:
    """One-sided p-value (against value <= 0) of a mean whose 95 % interval [low, high] is the
    t interval of ``n`` values (n - 1 degrees of freedom; the normal one for a single value), as
    ``mean_interval`` makes it: the interval read back as a standard error."""
    if value is None or low is None or high is None:
        return None
    df = n - 1 if n > 1 else None
    se = (high - low) / (2 * (t_quantile(df) if df else 1.96))
    if se <= 0:  # no spread at all: the sign alone, and no evidence either way at zero
        return 0.0 if value > 0 else 1.0 if value < 0 else 0.5
    return t_sf(value / se, df)


def holm(p_values: list[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of a family of p-values (None: not tested, left out)."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        adjusted[i] = running
    return adjusted
