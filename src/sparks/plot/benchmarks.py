"""A run's accuracy on every evaluation set it answers (``runs.<name>.evaluate_on``), in the
study's form (its Figure 4): accuracy per benchmark across checkpoints with the emergence cohorts
marked, beside the starting model's accuracy when its intervened heads are scaled (the trade-off
reproduced by scaling), and the table of per-benchmark gains and losses, base to final checkpoint,
with paired intervals over the set's problems.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from sparks.stats import mean_interval

FIGURE = "benchmarks"  # drawn when a run of the config is evaluated on more than its own task


def set_accuracy(passk: pl.DataFrame) -> pl.DataFrame:
    """Per evaluation set (provenance ``task``) and checkpoint: accuracy over all its problems
    (the difficulties weighted by their problems), with a normal 95 % interval."""
    rows = passk.filter(pl.col("k_samples") == 1)
    weight = pl.col("n_problems") / pl.col("n_problems").sum()
    return (
        rows.group_by("task", "step")
        .agg(
            (pl.col("accuracy") * weight).sum().alias("accuracy"),
            ((pl.col("accuracy_se").fill_null(0) * weight) ** 2).sum().sqrt().alias("se"),
            pl.col("n_problems").sum(),
        )
        .sort("task", "step")
    )


def set_scaling(interventions: pl.DataFrame, heads: str) -> pl.DataFrame:
    """Per evaluation set and scale factor: the starting model's accuracy with its ``heads``
    (evaluate.heads) scaled, over all problems; the unmodified model at factor 1."""
    rows = (
        interventions.filter((pl.col("kind") == "scale") & pl.col("heads_from").is_in(["none", heads]))
        .unique(["task", "heads_from", "alpha", "difficulty"])  # accuracy is the same on each k_samples row
        .with_columns(pl.col("alpha").fill_null(1.0))
    )
    return (
        rows.group_by("task", "alpha")
        .agg(((pl.col("accuracy") * pl.col("n_samples")).sum() / pl.col("n_samples").sum()).alias("accuracy"))
        .sort("task", "alpha")
    )


def gains(samples: pl.DataFrame) -> pl.DataFrame:
    """Per evaluation set: accuracy at the first and last checkpoint and the change, with its 95 %
    t interval over per-problem differences (each problem's share of correct samples, paired on
    the problem), largest gains first."""
    rows = []
    for (task,), part in samples.group_by("task"):
        first, last = part["step"].min(), part["step"].max()
        per_problem = part.group_by("step", "sample_id").agg(pl.col("correct").cast(pl.Float64).mean().alias("value"))
        paired = per_problem.filter(pl.col("step") == last).join(
            per_problem.filter(pl.col("step") == first), on="sample_id", suffix="_base"
        )
        change, low, high = mean_interval((paired["value"] - paired["value_base"]).to_list())
        rows.append(
            {
                "task": task,
                "base": paired["value_base"].mean(),
                "final": paired["value"].mean(),
                "change": change,
                "low": low,
                "high": high,
                "n_problems": paired.height,
            }
        )
    schema = {"task": pl.String, "base": pl.Float64, "final": pl.Float64, "change": pl.Float64,
              "low": pl.Float64, "high": pl.Float64, "n_problems": pl.Int64}  # fmt: skip
    return pl.DataFrame(rows, schema=schema).sort("change", descending=True, nulls_last=True)


def benchmarks_figure(accuracy: pl.DataFrame, scaling: pl.DataFrame, cohort_steps: Sequence[int], title: str, heads: str):
    """Left: accuracy per set across checkpoints (95 % intervals), the emergence cohorts dashed.
    Right: the starting model's accuracy per set against the factor its ``heads`` are scaled by."""
    import matplotlib.pyplot as plt

    from sparks.plot.canvas import FIGSIZE, theme
    from sparks.plot.style import DPI

    theme()
    fig, (left, right) = plt.subplots(1, 2, figsize=(FIGSIZE[0] * 1.6, FIGSIZE[1]), dpi=DPI)
    tasks = accuracy["task"].unique(maintain_order=True).to_list()
    colours = dict(zip(tasks, plt.get_cmap("tab10").colors))
    for task in tasks:
        part = accuracy.filter(pl.col("task") == task)
        half = 1.96 * part["se"]
        left.plot(part["step"], part["accuracy"], marker="o", color=colours[task], label=task)
        left.fill_between(part["step"], part["accuracy"] - half, part["accuracy"] + half, color=colours[task], alpha=0.2, lw=0)
        scaled = scaling.filter(pl.col("task") == task)
        right.plot(scaled["alpha"], scaled["accuracy"], marker="o", color=colours[task], label=task)
    for i, step in enumerate(sorted(set(cohort_steps))):
        left.axvline(step, color="black", linewidth=0.8, linestyle="--", label="emergent cohort" if i == 0 else None)
    right.axvline(1.0, color="grey", linewidth=0.8)
    left.set(xlabel="checkpoint (training step)", ylabel="accuracy (95 % CI)", ylim=(-0.02, 1.02), title="across training")
    right.set(xlabel=f"scale factor of the {heads} heads", ylabel="accuracy, starting model", ylim=(-0.02, 1.02),
              title="the starting model, heads scaled")  # fmt: skip
    left.legend(title="evaluation set", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
