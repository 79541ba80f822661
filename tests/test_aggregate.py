"""The aggregate stage on hand-made tables: circuits, cohorts, statuses, frequency, Jaccard and bootstrap."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from sparks.aggregate import AggregateSettings, circuit_size_per_step
from sparks.aggregate.bootstrap import Resampled, draw_counts, draws
from sparks.aggregate.circuits import circuit_edges, circuit_table, cohort_table, frequency_table, jaccard_table, prune_isolated
from sparks.aggregate.importance import importance_table
from sparks.config import ConfigError

# 2 layers x 4 heads, 2 KV heads: heads 0, 1 share kv0 and heads 2, 3 share kv1
HEADS = pl.DataFrame({"layer": [0] * 4 + [1] * 4, "head": [0, 1, 2, 3] * 2, "kv_head": [0, 0, 1, 1] * 2})
EDGES = pl.DataFrame(
    [
        (0, "input", "a0.h0", "q", 1),
        (0, "a0.h1", "logits", "logits", 2),
        (0, "a1.h3", "logits", "logits", 3),
        (10, "a0.h0", "m0", "mlp", 1),
        (10, "input", "a1.kv1", "k", 2),  # touches a1.h2 and a1.h3, which share kv1
        (10, "a0.h1", "logits", "logits", 3),
        (20, "a1.h2", "logits", "logits", 1),
        (20, "a0.h0", "logits", "logits", 2),
        (20, "a0.h1", "logits", "logits", 3),
    ],
    schema=["step", "src", "dst", "dst_input", "rank"],
    orient="row",
)
STEPS = [0, 10, 20]


def active(circuit: pl.DataFrame, step: int) -> set[str]:
    return set(circuit.filter((pl.col("step") == step) & pl.col("in_circuit"))["node"])


@pytest.fixture
def circuit() -> pl.DataFrame:
    return circuit_table(circuit_edges(EDGES.lazy(), 2), HEADS, STEPS, kv_edges_activate_group=True)


def test_kv_edges_activate_no_head_by_default():
    circuit = circuit_table(circuit_edges(EDGES.lazy(), 2), HEADS, STEPS)
    assert active(circuit, 10) == {"a0.h0"}  # input -> a1.kv1<k> belongs to no single head


def test_circuit_membership(circuit):
    assert circuit.height == 3 * 8
    assert active(circuit, 0) == {"a0.h0", "a0.h1"}
    assert active(circuit, 10) == {"a0.h0", "a1.h2", "a1.h3"}
    assert active(circuit, 20) == {"a0.h0", "a1.h2"}
    row = circuit.filter((pl.col("step") == 10) & (pl.col("node") == "a1.h2"))
    assert row["n_edges"].item() == 1 and row["layer"].item() == 1


def test_cohorts_and_statuses(circuit):
    cohorts = cohort_table(circuit)
    assert cohorts.rows() == [
        (0, 0, None, 0, 20, 3, "maintained"),
        (0, 1, None, 0, 0, 1, "lost"),
        (1, 2, 10, 10, 20, 2, "emergent"),
        (1, 3, 10, 10, 10, 1, "transient"),  # gone from the final circuit
    ]


def test_emergence_waits_for_stability(circuit):
    stable = pl.DataFrame({"step": [10, 10, 20], "layer": [1, 1, 1], "head": [2, 3, 2], "stable": [False, False, True]})
    cohorts = cohort_table(circuit, stable)
    assert cohorts.filter(pl.col("status") == "emergent").rows() == [(1, 2, 20, 10, 20, 2, "emergent")]
    assert (1, 3) not in set(cohorts.select("layer", "head").rows())  # active once, never stable


def test_frequency(circuit):
    freq = {(r["layer"], r["head"]): r for r in frequency_table(circuit).iter_rows(named=True)}
    assert freq[0, 0]["frequency"] == 1 and freq[0, 0]["active_in_base"] and freq[0, 0]["active_in_final"]
    assert freq[0, 1]["frequency"] == pytest.approx(1 / 3) and not freq[0, 1]["active_in_final"]
    assert freq[1, 2]["frequency"] == pytest.approx(2 / 3) and not freq[1, 2]["active_in_base"]
    assert freq[1, 0]["frequency"] == 0 and len(freq) == 8


def test_jaccard_of_consecutive_circuits(circuit):
    chosen = circuit_edges(EDGES.lazy(), 2).collect()
    table = jaccard_table(chosen, circuit)
    assert table["step"].to_list() == [10, 20] and table["previous_step"].to_list() == [0, 10]
    assert table["jaccard_edges"].to_list() == [0.0, 0.0]
    assert table["jaccard_heads"].to_list() == pytest.approx([1 / 4, 2 / 3])


def test_resampled_circuit_probabilities():
    names = EDGES.filter(pl.col("step") == 0).select("src", "dst", "dst_input")  # 3 edges
    resampled = Resampled(names, HEADS)
    same = np.tile([[5.0, -4.0, 1.0]], (10, 1))  # every pair agrees: top-2 = edges 0 and 1
    mean_of = draw_counts(draws(10, 20, seed=0), 10) / 10
    p = resampled.members(mean_of @ same, top_n=2).mean(0)
    assert dict(zip(HEADS.select("layer", "head").rows(), p)) == {
        **{(layer, head): 0.0 for layer in (0, 1) for head in range(4)},
        (0, 0): 1.0,
        (0, 1): 1.0,
    }
    split = np.array([[5.0, 0.0, 0.0]] * 5 + [[0.0, 0.0, 5.0]] * 5)  # half the pairs favour edge 0, half edge 2
    p = resampled.members(draw_counts(draws(10, 200, seed=0), 10) / 10 @ split, top_n=1).mean(0)
    assert 0.2 < p[0] < 0.8


def test_circuit_size_from_a_faithfulness_target():
    curve = pl.DataFrame(
        {"step": [0] * 3 + [10] * 3, "n_edges": [1, 10, 100] * 2, "faithfulness": [0.2, 0.95, 1.0, 0.5, 0.7, 1.0]}
    )
    sizes = circuit_size_per_step(curve.lazy(), AggregateSettings.defaults(faithfulness_target=0.9), [0, 10])
    assert sizes.rows() == [(0, 10), (10, 100)]
    assert circuit_size_per_step(curve.lazy(), AggregateSettings.defaults(top_n=7), [0, 10]).rows() == [(0, 7), (10, 7)]


def test_bad_settings():
    with pytest.raises(ConfigError, match="aggregate.top_n"):
        AggregateSettings.defaults(top_n=0)
    with pytest.raises(ConfigError, match="faithfulness_target"):
        AggregateSettings.defaults(faithfulness_target=1.5)


def test_settings_defaults_match_the_schema():
    from sparks.config import schema

    section = schema()["properties"]["aggregate"]["properties"]
    assert {key: spec["default"] for key, spec in section.items()} == AggregateSettings.defaults().__dict__


def test_emergence_by_checkpoint_and_its_correlation(circuit):
    from sparks.aggregate.emergence import emergence_by_checkpoint, pearson_with_interval

    log = pl.DataFrame({"step": list(range(1, 21)), "reward": [0.0] * 10 + [1.0] * 10})
    table = emergence_by_checkpoint(circuit, cohort_table(circuit), log)
    assert table.rows() == [(10, 2, 2, 0.0), (20, 1, 0, 1.0)]
    r, low, high = pearson_with_interval([1, 2, 3, 4, 5], [2, 4, 5, 4, 5])
    assert r == pytest.approx(np.corrcoef([1, 2, 3, 4, 5], [2, 4, 5, 4, 5])[0, 1])
    assert low < r < high <= 1
    assert pearson_with_interval([1, 1, 1, 1], [1, 2, 3, 4]) == (None, None, None)


def test_think_mode_table_classifies_every_head():
    from sparks.aggregate.think_modes import compare_steps, overlap_summary, think_mode_table

    heads = pl.DataFrame({"step": [0] * 4, "layer": [0, 0, 1, 1], "head": [0, 1, 0, 1], "kv_head": [0, 0, 0, 0],
                          "score": [4.0, 3.0, 2.0, 1.0], "rank": [1, 2, 3, 4]})  # fmt: skip

    def edges(pairs):  # (src, dst) with dst a query input, ranked in order
        return pl.DataFrame({"step": [0] * len(pairs), "src": [s for s, _ in pairs], "dst": [d for _, d in pairs],
                             "dst_input": ["q"] * len(pairs), "rank": list(range(1, len(pairs) + 1))})  # fmt: skip

    on = edges([("a0.h0", "a1.h0"), ("input", "a0.h1")])
    off = edges([("a0.h0", "a1.h1"), ("input", "m0")])
    table = think_mode_table({True: on, False: off}, {True: heads, False: heads}, top_n=2)
    modes = dict(zip(table["node"], table["mode"]))
    assert modes == {"a0.h0": "both", "a1.h0": "think_on_only", "a0.h1": "think_on_only", "a1.h1": "think_off_only"}
    summary = overlap_summary(table).row(0, named=True)
    assert (summary["both"], summary["think_on_only"], summary["think_off_only"]) == (1, 2, 1)
    assert summary["jaccard"] == pytest.approx(1 / 4)
    assert compare_steps([0, 30, 60], "ends") == [0, 60] and compare_steps([0, 30], "none") == []


def test_importance_and_effect_as_the_study_defines_them():
    """I = summed |score| of a head's circuit edges out, normalised per step; E = (I - I0) / (I + I0 + 1e-6)."""
    edges = pl.DataFrame(
        [
            (0, "a0.h0", 3.0), (0, "a0.h1", 1.0), (0, "a0.h1", 0.0), (0, "input", 9.0), (0, "m0", 5.0),
            (10, "a0.h0", 1.0), (10, "a1.h2", 1.0),
            (20, "a1.h2", 2.0), (20, "a0.h0", 2.0),
        ],
        schema=["step", "src", "abs_score"],
        orient="row",
    )  # fmt: skip
    table = importance_table(edges, HEADS, STEPS)
    assert table.height == len(STEPS) * HEADS.height
    assert table.group_by("step").agg(pl.col("importance").sum())["importance"].to_list() == pytest.approx([1.0] * 3)

    def row(step, layer, head):
        return table.filter((pl.col("step") == step) & (pl.col("layer") == layer) & (pl.col("head") == head)).row(0, named=True)

    assert row(0, 0, 0)["importance"] == pytest.approx(0.75) and row(0, 0, 0)["effect"] is None  # MLPs and input do not count
    assert row(10, 0, 0)["effect"] == pytest.approx((0.5 - 0.75) / (1.25 + 1e-6))
    assert row(10, 1, 2)["effect"] == pytest.approx(0.5 / (0.5 + 1e-6))  # new in the post-trained circuit: about +1
    assert row(10, 0, 1)["effect"] == pytest.approx(-0.25 / (0.25 + 1e-6))  # dropped: about -1
    assert row(20, 1, 3)["effect"] == 0  # in no circuit
    assert row(0, 0, 0)["mean_effect"] == pytest.approx((row(10, 0, 0)["effect"] + row(20, 0, 0)["effect"]) / 2)


def test_pruning_drops_the_edges_of_isolated_nodes_until_none_is_left():
    edges = pl.DataFrame(
        [
            ("input", "a0.h0", "q"), ("a0.h0", "logits", "logits"),  # a path: kept
            ("a0.h1", "m0", "mlp"), ("m0", "logits", "logits"),  # a0.h1 receives nothing: its edge goes, m0 then too
            ("input", "a0.h2", "q"), ("a0.h2", "a1.h1", "q"),  # a chain into a1.h1, which sends nothing: all of it goes
            ("input", "a1.kv1", "k"), ("a1.h3", "logits", "logits"),  # k of kv1 feeds a1.h3 (its group), which sends
        ],
        schema=["src", "dst", "dst_input"],
        orient="row",
    ).with_columns(pl.lit(0, pl.Int64).alias("step"))  # fmt: skip
    kept = prune_isolated(edges, HEADS)
    assert set(kept.select("src", "dst").rows()) == {
        ("input", "a0.h0"), ("a0.h0", "logits"), ("input", "a1.kv1"), ("a1.h3", "logits")
    }  # fmt: skip
    assert prune_isolated(kept, HEADS).equals(kept)
