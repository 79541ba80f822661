"""Does the number of newly activated heads track the reward? One row per checkpoint after the
base: emergent heads active there, and the mean reward over the training steps since the previous
checkpoint; Pearson r over checkpoints with a Fisher-z 95 % interval (wide: few checkpoints)."""

from __future__ import annotations

import math

import polars as pl

from sparks.aggregate.circuits import CALLED


def emergence_by_checkpoint(circuit: pl.DataFrame, cohorts: pl.DataFrame, train_log: pl.DataFrame) -> pl.DataFrame:
    """step, emergent_active (called heads, emergent or transient, active at the step from their
    cohort on), new_heads (heads whose cohort is the step) and reward (mean over the steps since
    the previous checkpoint)."""
    steps = sorted(circuit["step"].unique().to_list())
    emergent = cohorts.filter(pl.col("status").is_in(CALLED)).select("layer", "head", "cohort_step")
    active = circuit.filter(pl.col("in_circuit")).join(emergent, on=["layer", "head"])
    rows = []
    for previous, step in zip(steps, steps[1:]):
        window = train_log.filter((pl.col("step") > previous) & (pl.col("step") <= step))["reward"].drop_nulls()
        rows.append(
            {
                "step": step,
                "emergent_active": active.filter((pl.col("step") == step) & (pl.col("cohort_step") <= step)).height,
                "new_heads": emergent.filter(pl.col("cohort_step") == step).height,
                "reward": window.mean() if len(window) else None,
            }
        )
    return pl.DataFrame(rows, schema={"step": pl.Int64, "emergent_active": pl.Int64, "new_heads": pl.Int64, "reward": pl.Float64})


def pearson_with_interval(x: list[float], y: list[float]) -> tuple[float | None, float | None, float | None]:
    """(r, low, high): Pearson r and its Fisher-z 95 % interval; None where undefined (n < 4 or no spread)."""
    n = len(x)
    if n < 3:
        return None, None, None
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx, syy = sum((a - mx) ** 2 for a in x), sum((b - my) ** 2 for b in y)
    if sxx == 0 or syy == 0:
        return None, None, None
    r = max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))  # rounding can step past +-1
    if n < 4 or abs(r) == 1:
        return r, None, None
    z, half = math.atanh(r), 1.96 / math.sqrt(n - 3)
    return r, math.tanh(z - half), math.tanh(z + half)


def emergence_table(circuit: pl.DataFrame, cohorts: pl.DataFrame, train_log: pl.DataFrame) -> pl.DataFrame:
    """emergence_by_checkpoint with, on every row, Pearson r of emergent_active against reward over
    the checkpoints that have a reward and its 95 % interval (null without a reward or a spread)."""
    table = emergence_by_checkpoint(circuit, cohorts, train_log)
    rewarded = table.filter(pl.col("reward").is_not_null())
    r, low, high = pearson_with_interval(rewarded["emergent_active"].to_list(), rewarded["reward"].to_list())
    return table.with_columns(
        pl.lit(r, pl.Float64).alias("pearson_r"),
        pl.lit(low, pl.Float64).alias("pearson_low"),
        pl.lit(high, pl.Float64).alias("pearson_high"),
    )
