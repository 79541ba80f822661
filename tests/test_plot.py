"""Plot stage pieces on the hand-made tables of test_aggregate."""

from __future__ import annotations

import polars as pl
import pytest
from matplotlib.image import imread
from test_aggregate import EDGES, HEADS, STEPS

from sparks.aggregate.circuits import circuit_edges, circuit_table, cohort_table, frequency_table, with_checkpoint_status
from sparks.aggregate.importance import importance_table
from sparks.plot.canvas import save
from sparks.plot.figures import (
    cohort_figure,
    faithfulness_figure,
    frequency_figure,
    importance_figure,
    status_counts,
)
from sparks.plot.style import DPI


def tables():
    circuit = circuit_table(circuit_edges(EDGES.lazy(), 2), HEADS, STEPS, kv_edges_activate_group=True)
    cohorts = cohort_table(circuit)
    return with_checkpoint_status(circuit, cohorts), cohorts, frequency_table(circuit)


def test_status_counts_count_every_circuit_head_once():
    circuit, cohorts, _ = tables()
    bands = {(r["step"], r["band"]): r["n_heads"] for r in status_counts(circuit, cohorts).iter_rows(named=True)}
    assert bands == {
        (0, "maintained"): 2,  # a0.h0 and a0.h1
        (10, "maintained"): 1,  # a0.h0
        (20, "maintained"): 1,
        (0, "emergent 10"): 0,
        (10, "emergent 10"): 1,  # a1.h2
        (20, "emergent 10"): 1,
        (0, "transient"): 0,
        (10, "transient"): 1,  # a1.h3, called at 10 and gone from the final circuit
        (20, "transient"): 0,
        (0, "lost"): 0,
        (10, "lost"): -1,  # a0.h1, below zero
        (20, "lost"): -1,
    }
    active = circuit.filter(pl.col("in_circuit")).group_by("step").len()
    for step, n in active.rows():
        assert sum(v for (s, band), v in bands.items() if s == step and v > 0) == n


def test_checkpoint_status_gates_new_heads_until_they_are_stable():
    circuit, _, _ = tables()
    stable = circuit.select("step", "layer", "head", (pl.col("step") == 20).alias("stable"))  # stable only at step 20
    cohorts = cohort_table(circuit, stable)
    status = with_checkpoint_status(circuit.drop("status"), cohorts)
    at = {(r["step"], r["node"]): r["status"] for r in status.iter_rows(named=True)}
    assert at[(10, "a1.h2")] == "new" and at[(20, "a1.h2")] == "emergent"  # cohort 20: new before it
    assert at[(10, "a1.h3")] == "new" and at[(20, "a1.h3")] == "inactive"  # active once, never stable
    assert at[(0, "a0.h1")] == "maintained" and at[(10, "a0.h1")] == "lost"
    counts = status_counts(status, cohorts)
    assert counts.filter((pl.col("step") == 10) & (pl.col("band") == "new"))["n_heads"].item() == 2


def test_figures_are_written_as_png_and_svg(tmp_path):
    circuit, cohorts, frequency = tables()
    log = pl.DataFrame({"step": list(range(1, 21)), "reward": [i / 20 for i in range(20)], "loss": [None] * 20})
    curves = pl.DataFrame({"step": [0, 0, 10, 10], "edge_fraction": [0.1, 1.0, 0.1, 1.0], "faithfulness": [0.5, 1.0, 0.7, 1.0]})
    importance = importance_table(
        circuit_edges(EDGES.lazy(), 2).collect().with_columns(pl.col("rank").cast(pl.Float64).alias("abs_score")), HEADS, STEPS
    )
    figures = {
        "cohorts": cohort_figure(circuit, cohorts, log, "test"),
        "given_cohorts": cohort_figure(circuit, cohorts, log.clear(), "a run of given checkpoints: no training log"),
        "importance": importance_figure(importance, cohorts, "test"),
        "frequency": frequency_figure(frequency, cohorts, "test"),
        "faithfulness": faithfulness_figure(curves, "test"),
    }
    for name, fig in figures.items():
        size = tuple(round(v * DPI) for v in reversed(fig.get_size_inches()))
        png, svg = save(fig, tmp_path / name)
        assert imread(png).shape[:2] == size and svg.stat().st_size > 5000  # twice a plain screen's 100 dpi
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.{e}" for n in figures for e in ("png", "svg"))


def test_benchmark_figures(tmp_path):
    from sparks.evaluate import pass_table
    from sparks.plot.figures import accuracy_figure, passk_figure, scaling_figure

    samples = pl.DataFrame(
        {
            "difficulty": ["easy"] * 4 + ["hard"] * 4,
            "sample_id": [0, 0, 1, 1, 2, 2, 3, 3],
            "k": [0, 1] * 4,
            "correct": [True, True, True, False, False, False, True, False],
        }
    )
    per_step = pl.concat([pass_table(samples, (1, 2)).with_columns(pl.lit(s).alias("step")) for s in (0, 10)])
    passk = pl.DataFrame(
        {
            "difficulty": ["easy", "easy", "hard", "hard"] * 2,
            "k_samples": [1, 2] * 4,
            "pass_at_k": [0.7, 0.9, 0.2, 0.3] * 2,
            "success_at_k": [0.6, 0.9, 0.3, 0.3] * 2,
            "all_correct_at_k": [0.7, 0.5, 0.2, 0.05] * 2,
            "checkpoint": ["base"] * 4 + ["final"] * 4,
        }
    )
    interventions = pl.DataFrame(
        {
            "kind": ["scale"] * 4 + ["ablate"] * 3,
            "heads_from": ["none", "emergent", "same_layer", "same_layer", "none", "emergent", "same_layer"],
            "alpha": [None, 2.0, 2.0, 2.0, None, None, None],
            "difficulty": ["hard"] * 7,
            "accuracy": [0.2, 0.3, 0.2, 0.25, 0.5, 0.4, 0.5],
        }
    )
    for name, fig in {
        "accuracy": accuracy_figure(per_step, "t", ["easy", "hard"], [10]),
        "passk": passk_figure(passk, "t", ["easy", "hard"]),
        "scaling": scaling_figure(interventions, "t", ["easy", "hard"]),
    }.items():
        png, _ = save(fig, tmp_path / name)
        assert imread(png).shape[:2] == (1200, 1600)


def test_plot_names_each_figures_files_or_refuses(tmp_path):
    from sparks.plot import figure_files

    outputs = [tmp_path / "a" / "arith_cohorts.png", tmp_path / "b" / "arith_cohorts.svg"]
    assert figure_files(outputs, "arith", ("cohorts",)) == {"cohorts": sorted(outputs)}  # formats may sit apart
    with pytest.raises(ValueError, match=r"missing: \['tokens'\]"):
        figure_files(outputs + [tmp_path / "arith_tokens.png"], "arith", ("cohorts", "tokens"))
    with pytest.raises(ValueError, match="not a figure"):
        figure_files(outputs + [tmp_path / "notes.txt"], "arith", ("cohorts",))
