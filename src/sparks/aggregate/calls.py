"""A run's emergence calls: the paired test of :mod:`sparks.aggregate.bootstrap` at every
checkpoint, and its null, the same test between two disjoint halves of one checkpoint's pairs.

Between the halves nothing was learned: every head the test calls there is a false emergence.
Each checkpoint's pairs (those every checkpoint shares) are split once, by the experiment seed,
into halves A and B of equal size; the test runs both ways (A as the "base", B as the "later
checkpoint", and the reverse), with resamples drawn within each half and the exact-effect change
read as the difference of two independent means. Halves hold half the pairs, so this null is
noisier than a full comparison: its rate bounds the false calls of the run from above.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from sparks.aggregate.bootstrap import Resampled, called, draw_counts, draws, exact_change, shared_rows, unpaired_change

PAIR_KEY = ("difficulty", "pair_id")  # pair_id counts within a difficulty


def _keys(path: str | Path) -> list[tuple]:
    return pl.read_parquet(path, columns=list(PAIR_KEY)).rows()


def _pair_scores(path: str | Path, rows: np.ndarray) -> np.ndarray:
    """[len(rows), n_edges] float64: the pair_edges table's scores at ``rows``."""
    scores = pl.read_parquet(path, columns=["scores"])["scores"]
    return np.stack(scores.to_numpy())[rows].astype(np.float64)


def _effects(path: str | Path, heads: pl.DataFrame) -> tuple[list[tuple], np.ndarray]:
    """(pair keys, [n_pairs, n_heads] exact effects, columns in ``heads`` order) of a head_effects table."""
    table = pl.read_parquet(path, columns=[*PAIR_KEY, "layer", "head", "effect"])
    names = [f"{layer}.{head}" for layer, head in heads.select("layer", "head").rows()]
    wide = (
        table.with_columns(pl.format("{}.{}", "layer", "head").alias("name"))
        .pivot(on="name", index=list(PAIR_KEY), values="effect")
        .sort(*PAIR_KEY)
    )
    return wide.select(PAIR_KEY).rows(), wide.select(names).to_numpy()


def _names(heads: pl.DataFrame, mask: np.ndarray) -> str:
    return " ".join(f"a{layer}.h{head}" for (layer, head), on in zip(heads.select("layer", "head").rows(), mask) if on)


def emergence_calls(
    pair_edges: dict[int, str | Path],
    head_effects: dict[int, str | Path] | None,
    resampled: Resampled,
    sizes: dict[int, int],
    point: dict[int, np.ndarray],
    resamples: int,
    threshold: float,
    seed: int,
    halves: bool = True,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(stability, null_calls) of one run: per checkpoint and head the test's numbers and call;
    per checkpoint and direction the heads the pair-halves null calls (no rows without ``halves``).

    ``pair_edges`` and ``head_effects`` (None: no exact effects) map each step, base first, to its
    table; ``sizes`` each step to its circuit size; ``point`` each step to its point circuit's heads
    (bool, ``resampled.heads`` order)."""
    steps = list(pair_edges)
    base = steps[0]
    heads = resampled.heads
    shared, rows = shared_rows({step: _keys(path) for step, path in pair_edges.items()})
    n = len(shared)
    mean_of = draw_counts(draws(n, resamples, seed), n) / n if resamples else None
    effects = {}
    exact_keys: list[tuple] = []
    if head_effects is not None:
        loaded = {step: _effects(path, heads) for step, path in head_effects.items()}
        exact_keys, exact_rows = shared_rows({step: keys for step, (keys, _) in loaded.items()})
        effects = {step: loaded[step][1][exact_rows[step]] for step in steps}
    half = n // 2
    order = np.random.default_rng(seed).permutation(n)
    split = (order[:half], order[half : 2 * half])
    in_a = {shared[i] for i in split[0]}
    exact_half = np.array([key in in_a for key in exact_keys], dtype=bool)

    members, rows_out, null_rows = {}, [], []
    for step in steps:
        scores = _pair_scores(pair_edges[step], rows[step])
        members[step] = resampled.members(mean_of @ scores, sizes[step]) if resamples else point[step][None]
        row = {"step": step, "p_in_circuit": members[step].mean(0), "called": np.zeros(heads.height, dtype=bool)}
        if step in effects:
            row["effect"] = effects[step].mean(0)
            row["effect_se"] = effects[step].std(0, ddof=1) / np.sqrt(len(effects[step]))
        if step != base:
            row["p_change"] = (~members[base] & members[step]).mean(0)
            low = high = None
            if step in effects:
                row["effect_change"], low, high = exact_change(effects[step], effects[base])
                row["change_low"], row["change_high"] = low, high
            row["called"] = called(point[step], point[base], row["p_change"], threshold, low, high)
        rows_out.append(row)
        if halves:
            null_rows += _halves_null(
                step, scores, split, effects.get(step), exact_half, resampled, sizes[step], resamples, threshold, seed
            )

    columns = ("p_in_circuit", "p_change", "effect", "effect_se", "effect_change", "change_low", "change_high")
    frames = [
        heads.select("layer", "head").with_columns(
            pl.lit(row["step"], pl.Int64).alias("step"),
            *[pl.Series(c, row[c], dtype=pl.Float64) if c in row else pl.lit(None, pl.Float64).alias(c) for c in columns],
            pl.Series("called", row["called"], dtype=pl.Boolean),
        )
        for row in rows_out
    ]
    stability = pl.concat(frames).select("step", "layer", "head", *columns, "called")
    null = pl.DataFrame(
        null_rows,
        schema={
            "step": pl.Int64,
            "direction": pl.String,
            "n_pairs": pl.Int64,
            "n_called": pl.Int64,
            "heads": pl.String,
            "n_only": pl.Int64,
        },
        orient="row",
    )
    return stability, null


def _halves_null(
    step: int,
    scores: np.ndarray,
    halves: tuple[np.ndarray, np.ndarray],
    effects: np.ndarray | None,
    exact_half: np.ndarray,
    resampled: Resampled,
    size: int,
    resamples: int,
    threshold: float,
    seed: int,
) -> list[tuple]:
    """(step, direction, pairs per half, heads called, their names, heads only in the later half's
    circuit) for a_to_b and b_to_a."""
    point, members = [], []
    for offset, half in enumerate(halves):
        part = scores[half]
        point.append(resampled.members(part.mean(0)[None], size)[0])
        if resamples:
            mean_of = draw_counts(draws(len(half), resamples, seed + 1 + offset), len(half)) / len(half)
            members.append(resampled.members(mean_of @ part, size))
        else:
            members.append(point[-1][None])
    exact = None if effects is None else (effects[exact_half], effects[~exact_half])
    out = []
    for name, (before, after) in {"a_to_b": (0, 1), "b_to_a": (1, 0)}.items():
        p_change = (~members[before] & members[after]).mean(0)
        low = high = None
        if exact is not None:
            _, low, high = unpaired_change(exact[after], exact[before])
        hits = called(point[after], point[before], p_change, threshold, low, high)
        only = int((point[after] & ~point[before]).sum())
        out.append((step, name, len(halves[0]), int(hits.sum()), _names(resampled.heads, hits), only))
    return out
