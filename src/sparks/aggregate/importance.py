"""Head importance and its change over post-training, as the study defines them (arXiv
2509.25758, App. A.6, Eq. 6-9).

At checkpoint t, head (l, h)'s importance I_t is the sum of |score| over the circuit edges leaving
it, normalised to sum 1 over the heads; its effect against the first checkpoint (the starting
model) is E_t = (I_t - I_0) / (I_t + I_0 + 1e-6): +1 for a head only the post-trained circuit
uses, -1 for one it dropped, 0 for one both use alike (or neither). The study averages E over
the checkpoints after the first (its Fig. 13): the table's ``mean_effect``, the same on every row of a head.
"""

from __future__ import annotations

import polars as pl

EPSILON = 1e-6
_HEAD = r"^a(\d+)\.h(\d+)$"


def importance_table(circuit_edges: pl.DataFrame, heads: pl.DataFrame, steps: list[int]) -> pl.DataFrame:
    """One row per (step, head): importance, effect (null at the first step) and the head's mean effect.

    ``circuit_edges`` holds each checkpoint's circuit edges (step, src, abs_score); ``heads`` the
    model's heads (layer, head)."""
    out = (
        circuit_edges.with_columns(
            pl.col("src").str.extract(_HEAD, 1).cast(pl.Int64).alias("layer"),
            pl.col("src").str.extract(_HEAD, 2).cast(pl.Int64).alias("head"),
        )
        .drop_nulls("layer")
        .group_by("step", "layer", "head")
        .agg(pl.col("abs_score").sum().alias("outgoing"))
    )
    grid = pl.DataFrame({"step": steps}, schema={"step": pl.Int64}).join(heads.select("layer", "head").unique(), how="cross")
    table = (
        grid.join(out, on=["step", "layer", "head"], how="left")
        .with_columns(pl.col("outgoing").fill_null(0.0))
        .with_columns((pl.col("outgoing") / pl.col("outgoing").sum().over("step")).fill_nan(0.0).alias("importance"))
    )
    base = table.filter(pl.col("step") == steps[0]).select("layer", "head", pl.col("importance").alias("base"))
    effect = (pl.col("importance") - pl.col("base")) / (pl.col("importance") + pl.col("base") + EPSILON)
    return (
        table.join(base, on=["layer", "head"])
        .with_columns(pl.when(pl.col("step") != steps[0]).then(effect).alias("effect"))
        .with_columns(pl.col("effect").mean().over("layer", "head").alias("mean_effect"))
        .select("step", "layer", "head", "importance", "effect", "mean_effect")
        .sort("step", "layer", "head")
    )
