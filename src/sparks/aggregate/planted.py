"""A planted ground truth: on a run that trained only some heads (``runs.<name>.train_heads``),
how well does each detector find them?

Every other weight stayed as it was, so the change post-training made lives in the planted heads
(and, through them, in what reads them). Three detectors are scored against the planted set:
- ``emergence_test``: the heads the emergence test called (emergent or transient);
- ``exact_change``: the k heads whose exact effect changed most from the base to the final
  checkpoint (k = the number of planted heads, so precision equals recall unless fewer changed);
- ``weight_change``: the k heads whose own weights moved most, of those that moved at all (the
  trivial baseline: exact by construction here, and blind to any head whose role changed
  through other weights).
"""

from __future__ import annotations

import polars as pl

from sparks.aggregate.circuits import CALLED

SCHEMA = {
    "detector": pl.String,
    "n_planted": pl.Int64,
    "n_detected": pl.Int64,
    "true_positives": pl.Int64,
    "precision": pl.Float64,
    "recall": pl.Float64,
    "detected": pl.String,
    "planted": pl.String,
}


def _top(table: pl.DataFrame, column: str, k: int) -> set[str]:
    """The (at most) ``k`` heads of largest nonzero |column|, ties broken by layer and head."""
    ranked = table.drop_nulls(column).filter(pl.col(column) != 0)
    ranked = ranked.sort(pl.col(column).abs(), "layer", "head", descending=[True, False, False])
    return set(ranked.head(k).select(pl.format("a{}.h{}", "layer", "head")).to_series().to_list())


def planted_table(planted: list[str] | None, cohorts: pl.DataFrame, stability: pl.DataFrame, heads: pl.DataFrame) -> pl.DataFrame:
    """One row per detector (none for a run without planted heads). ``stability``: the run's
    per-checkpoint test table; ``heads``: its final checkpoint's heads table (weight_change)."""
    if not planted:
        return pl.DataFrame(schema=SCHEMA)
    truth, k = set(planted), len(set(planted))
    final = stability.filter(pl.col("step") == stability["step"].max())
    detected = {
        "emergence_test": set(
            cohorts.filter(pl.col("status").is_in(CALLED)).select(pl.format("a{}.h{}", "layer", "head")).to_series().to_list()
        ),
        "exact_change": _top(final, "effect_change", k) if final["effect_change"].null_count() < final.height else None,
        "weight_change": _top(heads, "weight_change", k) if heads["weight_change"].null_count() < heads.height else None,
    }
    rows = []
    for detector, found in detected.items():
        if found is None:
            continue  # not measured: no exact effects, or weights that could not be read
        hits = len(found & truth)
        rows.append(
            {
                "detector": detector,
                "n_planted": k,
                "n_detected": len(found),
                "true_positives": hits,
                "precision": hits / len(found) if found else None,
                "recall": hits / k,
                "detected": " ".join(sorted(found)),
                "planted": " ".join(sorted(truth)),
            }
        )
    return pl.DataFrame(rows, schema=SCHEMA)
