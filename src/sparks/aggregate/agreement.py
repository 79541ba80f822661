"""How well EAP-IG's head scores agree with the exact per-head effects, checkpoint by checkpoint.

Compared on magnitudes (|node score| against |mean exact effect|): IG overshoots single-head
patching, so values differ and rankings are what should agree. Under KL the small effects are
quadratic near zero and rank differently in the tail, so the top of the ranking (overlap of the
top k, k the circuit's head count at the step) says more than Spearman over every head.
"""

from __future__ import annotations

import numpy as np
import polars as pl


def _pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    if len(x) < 3 or x.std() == 0 or y.std() == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank)."""
    return pl.Series(x).rank("average").to_numpy()


def agreement_table(heads: pl.DataFrame, stability: pl.DataFrame, circuit: pl.DataFrame) -> pl.DataFrame:
    """One row per checkpoint with exact effects: heads compared, Pearson and Spearman of |EAP-IG
    score| against |exact effect|, k (the circuit's active heads, at least 1) and the share of the
    top k by EAP-IG that are in the top k by exact effect.

    ``heads``: step, layer, head, score (the attribute stage's heads tables); ``stability``: step,
    layer, head, effect; ``circuit``: step, layer, head, in_circuit."""
    joined = (
        heads.select("step", "layer", "head", pl.col("score").abs().alias("eap"))
        .join(stability.select("step", "layer", "head", pl.col("effect").abs().alias("exact")), on=["step", "layer", "head"])
        .join(circuit.select("step", "layer", "head", "in_circuit"), on=["step", "layer", "head"])
        .drop_nulls("exact")
    )
    rows = []
    for (step,), part in joined.sort("step", "layer", "head").group_by("step", maintain_order=True):
        eap, exact = part["eap"].to_numpy(), part["exact"].to_numpy()
        k = max(1, int(part["in_circuit"].sum()))
        top_eap, top_exact = set(np.argsort(-eap, kind="stable")[:k]), set(np.argsort(-exact, kind="stable")[:k])
        rows.append(
            {
                "step": step,
                "n_heads": len(eap),
                "pearson": _pearson(eap, exact),
                "spearman": _pearson(_ranks(eap), _ranks(exact)),
                "top_k": k,
                "top_k_overlap": len(top_eap & top_exact) / k,
            }
        )
    schema = {
        "step": pl.Int64,
        "n_heads": pl.Int64,
        "pearson": pl.Float64,
        "spearman": pl.Float64,
        "top_k": pl.Int64,
        "top_k_overlap": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema)
