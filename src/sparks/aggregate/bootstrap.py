"""How stable is a checkpoint's circuit under resampling of the pairs it was scored on?

Each resample draws the pairs with replacement, averages their edge scores, takes the top-N
edges and records which heads they touch. A head's ``p_in_circuit`` is the fraction of resamples
in which it is active.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from sparks.aggregate.circuits import touched_heads


def head_stability(
    pair_scores: np.ndarray,
    edges: pl.DataFrame,
    heads: pl.DataFrame,
    top_n: int,
    resamples: int,
    seed: int,
    kv_edges_activate_group: bool = False,
) -> pl.DataFrame:
    """(layer, head, p_in_circuit) for one checkpoint.

    ``pair_scores`` [n_pairs, n_edges] holds each pair's edge scores in the order of ``edges``
    (src, dst, dst_input), the order the attribute stage writes both tables in.
    """
    rng = np.random.default_rng(seed)
    n_pairs = pair_scores.shape[0]
    counts: dict[tuple[int, int], int] = {}
    for _ in range(resamples):
        mean = pair_scores[rng.integers(0, n_pairs, n_pairs)].mean(0)  # [n_edges]
        top = np.argpartition(-np.abs(mean), top_n - 1)[:top_n] if top_n < len(mean) else np.arange(len(mean))
        chosen = edges[top].select("src", "dst", "dst_input").with_columns(pl.lit(0, pl.Int64).alias("step"))
        for layer, head in (
            touched_heads(chosen, heads, kv_edges_activate_group).select("layer", "head").unique().collect().rows()
        ):
            counts[layer, head] = counts.get((layer, head), 0) + 1
    hits = pl.DataFrame(
        [(layer, head, n) for (layer, head), n in counts.items()],
        schema={"layer": pl.Int64, "head": pl.Int64, "hits": pl.Int64},
        orient="row",
    )
    return (
        heads.select("layer", "head")
        .join(hits, on=["layer", "head"], how="left")
        .select("layer", "head", (pl.col("hits").fill_null(0) / resamples).alias("p_in_circuit"))
    )
