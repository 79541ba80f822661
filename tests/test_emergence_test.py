"""The paired emergence test, its pair-halves null and EAP-IG against exact effects, on hand-made
tables (sparks.aggregate.bootstrap, .calls, .agreement)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from sparks.aggregate.agreement import agreement_table
from sparks.aggregate.bootstrap import Resampled, called, exact_change, unpaired_change
from sparks.aggregate.calls import emergence_calls

# 2 layers x 4 heads, 2 KV heads; three edges: input -> a0.h0<q>, a0.h1 -> logits, a1.h3 -> logits
HEADS = pl.DataFrame({"layer": [0] * 4 + [1] * 4, "head": [0, 1, 2, 3] * 2, "kv_head": [0, 0, 1, 1] * 2})
NAMES = pl.DataFrame(
    {"src": ["input", "a0.h1", "a1.h3"], "dst": ["a0.h0", "logits", "logits"], "dst_input": ["q", "logits", "logits"]}
)
N_PAIRS = 40
A0H0, A0H1, A1H3 = 0, 1, 7  # columns in HEADS order


def write_pairs(path, scores: np.ndarray, order: np.ndarray | None = None) -> str:
    """A pair_edges-like table (difficulty, pair_id, scores), rows in ``order``."""
    order = np.arange(len(scores)) if order is None else order
    ids = np.arange(len(scores))
    pl.DataFrame(
        {"difficulty": ["easy"] * len(scores), "pair_id": ids[order], "scores": [list(map(float, s)) for s in scores[order]]},
        schema={"difficulty": pl.String, "pair_id": pl.Int64, "scores": pl.List(pl.Float32)},
    ).write_parquet(path)
    return str(path)


def write_effects(path, effects: np.ndarray) -> str:
    """A head_effects-like table from [pairs, heads] effects."""
    n = len(effects)
    layer, head = HEADS["layer"].to_numpy(), HEADS["head"].to_numpy()
    pl.DataFrame(
        {
            "difficulty": ["easy"] * (n * 8),
            "pair_id": np.repeat(np.arange(n), 8),
            "layer": np.tile(layer, n),
            "head": np.tile(head, n),
            "effect": effects.reshape(-1),
        }
    ).write_parquet(path)
    return str(path)


def point(members_of: dict[int, set[int]]) -> dict[int, np.ndarray]:
    return {step: np.isin(np.arange(8), list(cols)) for step, cols in members_of.items()}


def run(tmp_path, scores: dict[int, np.ndarray], effects: dict[int, np.ndarray] | None, circuits, resamples=200, orders=None):
    orders = orders or {}
    pairs = {step: write_pairs(tmp_path / f"p{step}.parquet", s, orders.get(step)) for step, s in scores.items()}
    exact = None if effects is None else {step: write_effects(tmp_path / f"e{step}.parquet", e) for step, e in effects.items()}
    return emergence_calls(pairs, exact, Resampled(NAMES, HEADS), {s: 2 for s in scores}, point(circuits), resamples, 0.8, seed=0)


@pytest.fixture
def noise():
    return np.random.default_rng(1)


def scores_with(edge2: float, noise) -> np.ndarray:
    """[pairs, 3 edges]: edge 0 always first, edge 1 at 4, edge 2 at ``edge2`` (each pair noisy)."""
    return np.column_stack([np.full(N_PAIRS, 9.0), np.full(N_PAIRS, 4.0), np.full(N_PAIRS, edge2)]) + noise.normal(
        0, 0.3, (N_PAIRS, 3)
    )


def test_a_head_that_enters_and_whose_exact_effect_rises_is_called(tmp_path, noise):
    base, later = scores_with(0.0, noise), scores_with(6.0, noise)  # a1.h3's edge overtakes a0.h1's
    effects = {0: noise.normal(0, 0.01, (N_PAIRS, 8)), 10: noise.normal(0, 0.01, (N_PAIRS, 8))}
    effects[10][:, A1H3] += 0.5
    stability, _ = run(tmp_path, {0: base, 10: later}, effects, {0: {A0H0, A0H1}, 10: {A0H0, A1H3}})
    at = stability.filter(pl.col("step") == 10).sort("layer", "head")
    assert at["called"].to_list() == [i == A1H3 for i in range(8)]
    assert at["p_change"][A1H3] == 1.0 and at["p_change"][A0H0] == 0.0
    assert at["change_low"][A1H3] > 0.45 and at["change_high"][A1H3] < 0.55
    assert stability.filter(pl.col("step") == 0)["p_change"].null_count() == 8  # nothing to compare the base with


def test_no_call_without_an_exact_change(tmp_path, noise):
    base, later = scores_with(0.0, noise), scores_with(6.0, noise)
    flat = {0: noise.normal(0, 0.01, (N_PAIRS, 8)), 10: noise.normal(0, 0.01, (N_PAIRS, 8))}
    stability, _ = run(tmp_path, {0: base, 10: later}, flat, {0: {A0H0, A0H1}, 10: {A0H0, A1H3}})
    row = stability.filter((pl.col("step") == 10) & (pl.col("head") == 3) & (pl.col("layer") == 1))
    assert row["p_change"].item() == 1.0 and not row["called"].item()  # in the circuit, but its effect did not move
    without_exact, _ = run(tmp_path, {0: base, 10: later}, None, {0: {A0H0, A0H1}, 10: {A0H0, A1H3}})
    assert without_exact.filter(pl.col("step") == 10)["called"].sum() == 1  # the exact condition is not tested
    assert without_exact["effect"].null_count() == without_exact.height


def test_every_checkpoint_is_resampled_with_the_same_pairs(tmp_path, noise):
    """Two checkpoints with the same pair scores, stored in different row orders: paired draws give
    identical resampled circuits (p_change 0 for every head), although membership is uncertain."""
    tied = scores_with(4.0, noise)  # edges 1 and 2 tie on average: which is in flips between resamples
    order = noise.permutation(N_PAIRS)
    stability, _ = run(tmp_path, {0: tied, 10: tied}, None, {0: {A0H0, A0H1}, 10: {A0H0, A0H1}}, orders={10: order})
    by_step = {step: part.sort("layer", "head") for (step,), part in stability.group_by("step")}
    assert 0.05 < by_step[0]["p_in_circuit"][A1H3] < 0.95
    assert by_step[0]["p_in_circuit"].to_list() == by_step[10]["p_in_circuit"].to_list()
    assert by_step[10]["p_change"].to_list() == [0.0] * 8


def test_pair_halves_null(tmp_path, noise):
    same = scores_with(0.0, noise)
    _, null = run(tmp_path, {0: same, 10: same}, None, {0: {A0H0, A0H1}, 10: {A0H0, A0H1}})
    assert null.select("step", "direction").rows() == [(0, "a_to_b"), (0, "b_to_a"), (10, "a_to_b"), (10, "b_to_a")]
    assert null["n_pairs"].to_list() == [N_PAIRS // 2] * 4 and null["n_called"].sum() == 0
    assert null["n_only"].to_list() == [0] * 4  # both halves' circuits hold the same heads
    in_a = np.isin(np.arange(N_PAIRS), np.random.default_rng(0).permutation(N_PAIRS)[: N_PAIRS // 2])
    split = np.where(in_a[:, None], scores_with(0.0, noise), scores_with(8.0, noise))  # B: a1.h3 replaces a0.h1
    _, null = run(tmp_path, {0: split, 10: split}, None, {0: {A0H0, A0H1}, 10: {A0H0, A0H1}}, resamples=0)
    assert null["n_only"].to_list() == [1] * 4  # a1.h3 only in B's circuit, a0.h1 only in A's
    mixed = np.where(np.arange(N_PAIRS)[:, None] % 2 == 0, scores_with(0.0, noise), scores_with(8.0, noise))
    _, null = run(tmp_path, {0: mixed, 10: mixed}, None, {0: {A0H0, A0H1}, 10: {A0H0, A0H1}}, resamples=50)
    assert set(null["heads"].str.split(" ").explode().to_list()) <= {"", "a0.h1", "a1.h3"}


def test_intervals_and_the_call_rule():
    before = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]])
    after = before + np.array([[1.0, 0.0], [1.2, 0.1], [0.8, -0.1]])
    change, low, high = exact_change(after, before)
    diff = after - before
    half = 1.959964 * diff.std(0, ddof=1) / np.sqrt(3)
    np.testing.assert_allclose(change, [1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(low, change - half)
    change, low, high = unpaired_change(after, before)
    half = 1.959964 * np.sqrt(after.var(0, ddof=1) / 3 + before.var(0, ddof=1) / 3)
    np.testing.assert_allclose(high, change + half)
    in_now, in_base = np.array([True, True, True, False]), np.array([False, True, False, False])
    p = np.array([0.9, 1.0, 0.5, 1.0])
    assert called(in_now, in_base, p, 0.8, None, None).tolist() == [True, False, False, False]
    low, high = np.array([-0.1, 0, 0, 0]), np.array([0.2, 1, 1, 1])
    assert called(in_now, in_base, p, 0.8, low, high).tolist() == [False, False, False, False]  # interval holds zero
    assert called(in_now, in_base, p, 0.8, -high, -low + 0.15).tolist() == [False] * 4
    assert called(in_now, in_base, p, 0.8, np.array([-0.3, 0, 0, 0]), np.array([-0.1, 1, 1, 1])).tolist()[0]  # a fall counts


def test_agreement_of_eap_ig_with_exact_effects():
    heads = pl.DataFrame({"step": [0] * 4, "layer": [0, 0, 1, 1], "head": [0, 1, 0, 1], "score": [-4.0, 3.0, 2.0, 1.0]})
    exact = heads.select("step", "layer", "head", pl.Series("effect", [0.4, 0.1, 0.3, 0.0]))
    circuit = heads.select("step", "layer", "head", pl.Series("in_circuit", [True, True, False, False]))
    row = agreement_table(heads, exact, circuit).row(0, named=True)
    assert row["n_heads"] == 4 and row["top_k"] == 2
    assert row["pearson"] == pytest.approx(np.corrcoef([4, 3, 2, 1], [0.4, 0.1, 0.3, 0.0])[0, 1])
    assert row["spearman"] == pytest.approx(np.corrcoef([4, 3, 2, 1], [4, 2, 3, 1])[0, 1])
    assert row["top_k_overlap"] == 0.5  # EAP-IG's top 2 {a0.h0, a0.h1}, exact's {a0.h0, a1.h0}


def test_the_rule_is_stated_once_in_the_readme():
    from pathlib import Path

    from sparks.registry import EMERGENCE_RULE

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert f"> {EMERGENCE_RULE}" in readme  # the words the report prints, quoted as they are


def test_planted_precision_and_recall():
    from sparks.aggregate.planted import planted_table

    cohorts = pl.DataFrame(
        {"layer": [0, 1, 1], "head": [1, 2, 3], "status": ["maintained", "emergent", "transient"]},
    )  # the test called a1.h2 and a1.h3
    stability = HEADS.select("layer", "head").with_columns(
        pl.lit(10).alias("step"), pl.Series("effect_change", [0.0, -0.9, 0.1, 0.0, 0.0, 0.0, 0.5, 0.2])
    )  # the largest |change|: a0.h1 (-0.9), a1.h2 (0.5)
    heads = HEADS.with_columns(pl.Series("weight_change", [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.3, 0.0]))  # a1.h2 only
    table = planted_table(["a1.h2", "a0.h3"], cohorts, stability, heads)
    got = {
        r["detector"]: (r["n_detected"], r["true_positives"], r["precision"], r["recall"]) for r in table.iter_rows(named=True)
    }
    assert got == {
        "emergence_test": (2, 1, 0.5, 0.5),
        "exact_change": (2, 1, 0.5, 0.5),
        "weight_change": (1, 1, 1.0, 0.5),  # only a1.h2 moved: a head that did not is never detected
    }
    assert table.filter(pl.col("detector") == "exact_change")["detected"].item() == "a0.h1 a1.h2"
    assert planted_table(None, cohorts, stability, heads).is_empty()
    no_exact = stability.with_columns(pl.lit(None, pl.Float64).alias("effect_change"))
    assert "exact_change" not in planted_table(["a1.h2"], cohorts, no_exact, heads)["detector"].to_list()
