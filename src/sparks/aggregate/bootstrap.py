"""The paired emergence test: is a head's entry into the circuit a change, or noise in the pairs?

Every checkpoint of a run is scored on the same pairs. :func:`draws` resamples them once, with
replacement (rows of the pair ids every checkpoint shares, sorted); every checkpoint's resampled
circuits use those same draws, so a head's change from the base is measured within each resample
(paired). A resampled circuit is built exactly like the point circuit (:class:`Resampled`): the
top-N edges of the drawn pairs' mean scores, N the checkpoint's circuit size, pruned like it with
``aggregate.prune_isolated``, its heads those its edges touch.

A head is **called** at step t (``sparks.registry.EMERGENCE_RULE`` words it for the README and the report) when
1. it is in the point circuit at t and not in the base's (the first checkpoint's);
2. it is out of the base circuit and in the circuit at t *in the same resample* in at least
   ``aggregate.stability_threshold`` of the resamples (``p_change``);
3. its exact effect changed: the paired 95 % interval (normal, over the pairs patched at both
   checkpoints) of its mean exact effect at t minus at the base excludes zero, either way.
   Without exact effects (``attribute.exact: off``) this condition is not tested (null interval).
A head's cohort is the first step at which it is called.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from sparks.aggregate.circuits import connected_edges, kv_groups, touched_heads

Z95 = 1.959964


def draws(n_pairs: int, resamples: int, seed: int) -> np.ndarray:
    """[resamples, n_pairs] row indices drawn with replacement; the same for every checkpoint."""
    return np.random.default_rng(seed).integers(0, n_pairs, (resamples, n_pairs))


def draw_counts(rows: np.ndarray, n_pairs: int) -> np.ndarray:
    """[resamples, n_pairs] how often each pair is drawn: ``counts @ scores / n`` is each resample's mean."""
    counts = np.zeros((len(rows), n_pairs))
    for r, row in enumerate(rows):
        np.add.at(counts[r], row, 1.0)
    return counts


@dataclass
class Resampled:
    """Circuits of one graph from mean edge scores: which heads each top-N (pruned) circuit touches.

    ``edges`` lists the graph's edges (src, dst, dst_input) in the order of the pair scores;
    ``heads`` the model's heads (layer, head, kv_head), whose order the membership columns follow."""

    edges: pl.DataFrame
    heads: pl.DataFrame
    kv_edges_activate_group: bool = False
    prune: bool = False

    def __post_init__(self) -> None:
        self.rows = self.edges.select("src", "dst", "dst_input").rows()
        self.groups = kv_groups(self.heads)
        column = {key: i for i, key in enumerate(self.heads.select("layer", "head").rows())}
        indexed = self.edges.select("src", "dst", "dst_input").with_row_index("step").with_columns(pl.col("step").cast(pl.Int64))
        touched = touched_heads(indexed, self.heads, self.kv_edges_activate_group).collect()
        self.touches: list[list[int]] = [[] for _ in self.rows]
        for edge, layer, head in touched.select("step", "layer", "head").rows():
            self.touches[edge].append(column[layer, head])

    def members(self, mean_scores: np.ndarray, top_n: int) -> np.ndarray:
        """[len(mean_scores), n_heads] bool: the heads each row's circuit touches."""
        out = np.zeros((len(mean_scores), self.heads.height), dtype=bool)
        for r, scores in enumerate(mean_scores):
            top = np.argpartition(-np.abs(scores), top_n - 1)[:top_n] if top_n < len(scores) else np.arange(len(scores))
            if self.prune:
                top = top[connected_edges([self.rows[i] for i in top], self.groups)]
            for edge in top:
                out[r, self.touches[edge]] = True
        return out


def shared_rows(keys_by_step: dict[int, list[tuple]]) -> tuple[list[tuple], dict[int, np.ndarray]]:
    """The pairs every checkpoint has (their keys, e.g. (difficulty, pair_id), sorted) and, per
    step, the rows of that step's table that hold them, in that order."""
    shared = sorted(set.intersection(*(set(keys) for keys in keys_by_step.values())))
    if not shared:
        raise ValueError("the checkpoints of this run share no pair; attribute them on the same pairs table")
    rows = {}
    for step, keys in keys_by_step.items():
        position = {key: i for i, key in enumerate(keys)}
        rows[step] = np.array([position[key] for key in shared])
    return shared, rows


def exact_change(after: np.ndarray, before: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(change, low, high) per head: mean of after - before over paired rows [n, heads] and its
    normal 95 % interval (standard error of the paired differences)."""
    diff = after - before
    mean = diff.mean(0)
    half = Z95 * diff.std(0, ddof=1) / np.sqrt(len(diff))
    return mean, mean - half, mean + half


def unpaired_change(after: np.ndarray, before: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(change, low, high) per head between two disjoint sets of pairs: difference of means and
    its normal 95 % interval (the two standard errors added in quadrature)."""
    mean = after.mean(0) - before.mean(0)
    half = Z95 * np.sqrt(after.var(0, ddof=1) / len(after) + before.var(0, ddof=1) / len(before))
    return mean, mean - half, mean + half


def called(
    in_now: np.ndarray,
    in_base: np.ndarray,
    p_change: np.ndarray,
    threshold: float,
    low: np.ndarray | None,
    high: np.ndarray | None,
) -> np.ndarray:
    """The rule of this module's docstring, per head: point change, paired resampled change, and
    (where ``low``/``high`` are given) an exact-effect change whose interval excludes zero."""
    out = in_now & ~in_base & (p_change >= threshold)
    if low is not None:
        out &= (low > 0) | (high < 0)
    return out
