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
