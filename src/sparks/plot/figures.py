"""The figures of one run (seaborn/matplotlib, Agg backend; no global state is touched at import).

- cohorts: stacked area of active heads per checkpoint, maintained base heads at the bottom and
  one band per emergence cohort, above the run's reward (GRPO) or loss curve;
- frequency: layer x head heatmaps of activation frequency, base heads and emergent heads side
  by side, heads active in the final checkpoint outlined;
- faithfulness: the top-n circuit faithfulness curve of every checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import polars as pl
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from sparks.atomic import atomic_file

FIGSIZE = (8, 6)
BASE_BAND = "base heads still active"
DPI = 100  # 800 x 600 pixels


def _theme() -> None:
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")


def cohort_bands(circuit: pl.DataFrame, cohorts: pl.DataFrame) -> pl.DataFrame:
    """Active heads per checkpoint by band: base heads still active, and "cohort {step}" (emergent
    heads of that cohort still active). Columns: step, band, n_heads."""
    active = circuit.filter(pl.col("in_circuit")).join(cohorts, on=["layer", "head"], how="inner")
    bands = active.with_columns(
        pl.when(pl.col("status") == "emergent")
        .then(pl.format("cohort {}", pl.col("cohort_step")))
        .otherwise(pl.lit(BASE_BAND))
        .alias("band")
    )
    # an emergent head counts from its cohort step on; base heads at every step they are active
    bands = bands.filter((pl.col("status") != "emergent") | (pl.col("step") >= pl.col("cohort_step")))
    steps = circuit.select("step").unique()
    names = bands.select("band").unique()
    counts = bands.group_by("step", "band").agg(pl.len().cast(pl.Int64).alias("n_heads"))
    return (
        steps.join(names, how="cross")
        .join(counts, on=["step", "band"], how="left")
        .with_columns(pl.col("n_heads").fill_null(0))
        .sort("step", "band")
    )


def _band_order(band: str) -> tuple[int, int]:
    return (0, 0) if band == BASE_BAND else (1, int(band.split()[-1]))


def cohort_figure(circuit: pl.DataFrame, cohorts: pl.DataFrame, train_log: pl.DataFrame, title: str) -> Figure:
    _theme()
    bands = cohort_bands(circuit, cohorts)
    steps = sorted(circuit["step"].unique().to_list())
    names = sorted(bands["band"].unique().to_list(), key=_band_order)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=FIGSIZE, dpi=DPI, sharex=True, height_ratios=[2, 1])
    if names:
        values = [bands.filter(pl.col("band") == n).sort("step")["n_heads"].to_numpy() for n in names]
        palette = iter(sns.color_palette("colorblind", len(names)))
        colors = ["#bbbbbb" if n == BASE_BAND else next(palette) for n in names]
        top.stackplot(steps, values, labels=names, colors=colors, alpha=0.9)
        top.set_ylim(0, 1.4 * max(1, max(sum(v) for v in zip(*values))))  # room for the legend above the bands
        top.legend(loc="upper left", fontsize=8, ncol=2, title="active heads", title_fontsize=8)
    top.set_ylabel("active heads")
    top.set_title(title)
    metric = "reward" if train_log["reward"].null_count() < train_log.height else "loss"
    log = train_log.filter(pl.col(metric).is_not_null()).sort("step")
    bottom.plot(log["step"], log[metric], color=sns.color_palette("colorblind")[0], linewidth=0.8, alpha=0.5)
    if log.height >= 10:
        window = max(1, log.height // 20)
        smooth = log[metric].rolling_mean(window, min_samples=1)
        bottom.plot(
            log["step"], smooth, color=sns.color_palette("colorblind")[0], linewidth=2, label=f"{metric} (mean of {window})"
        )
        bottom.legend(loc="best", fontsize=8)
    if log.is_empty():  # a run of given checkpoints without a trainer's log history
        bottom.text(0.5, 0.5, "no training log (checkpoints given)", ha="center", va="center", transform=bottom.transAxes)
        bottom.set_yticks([])
    for step in steps:
        bottom.axvline(step, color="grey", linewidth=0.5, linestyle=":")
    bottom.set_ylabel(metric)
    bottom.set_xlabel("training step (checkpoints dotted)")
    fig.tight_layout()
    return fig


def importance_figure(importance: pl.DataFrame, cohorts: pl.DataFrame, title: str) -> Figure:
    """Layer x head grid of each head's effect (the study's Eq. 8-9: importance after vs before,
    averaged over the checkpoints after the first), emergent heads outlined."""
    _theme()
    effect = importance.filter(pl.col("step") == importance["step"].min())
    grid = effect.pivot(on="head", index="layer", values="mean_effect", sort_columns=True).sort("layer")
    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=DPI)
    values = grid.drop("layer").to_numpy() if grid.height else np.zeros((0, 0))
    sns.heatmap(
        values, vmin=-1, vmax=1, center=0, cmap="vlag", annot=values.size <= 400, fmt=".2f", annot_kws={"fontsize": 7},
        xticklabels=grid.columns[1:], yticklabels=grid["layer"].to_list(), cbar_kws={"label": "effect (-1 dropped, +1 new)"}, ax=ax,
    )  # fmt: skip
    for layer, head in cohorts.filter(pl.col("status") == "emergent").select("layer", "head").rows():
        ax.add_patch(Rectangle((head, layer), 1, 1, fill=False, edgecolor="black", linewidth=2))
    ax.set_xlabel("head (emergent heads outlined)")
    ax.set_ylabel("layer")
    ax.set_title(title, fontsize=11)
    fig.tight_layout()
    return fig


def frequency_figure(frequency: pl.DataFrame, cohorts: pl.DataFrame, title: str) -> Figure:
    _theme()
    n_layers, n_heads = frequency["layer"].max() + 1, frequency["head"].max() + 1
    df = frequency.join(cohorts.select("layer", "head", "status"), on=["layer", "head"], how="left")
    panels = {
        "base heads (active in step 0)": df.filter(pl.col("active_in_base")),
        "emergent heads": df.filter(pl.col("status") == "emergent"),
    }
    fig, axes = plt.subplots(1, 2, figsize=FIGSIZE, dpi=DPI, sharey=True)
    for ax, (name, part) in zip(axes, panels.items()):
        grid = np.full((n_layers, n_heads), np.nan)
        for row in part.iter_rows(named=True):
            grid[row["layer"], row["head"]] = row["frequency"]
        sns.heatmap(
            grid,
            ax=ax,
            vmin=0,
            vmax=1,
            cmap="viridis",
            square=True,
            cbar=ax is axes[-1],
            linewidths=0.5,
            linecolor="white",
            cbar_kws={"label": "activation frequency", "shrink": 0.6},
        )
        for row in df.filter(pl.col("active_in_final")).iter_rows(named=True):
            if not np.isnan(grid[row["layer"], row["head"]]):
                ax.add_patch(Rectangle((row["head"], row["layer"]), 1, 1, fill=False, edgecolor="#d55e00", linewidth=2))
        ax.set_title(f"{name} ({len(part)})", fontsize=10)
        ax.set_xlabel("head")
    axes[0].set_ylabel("layer")
    fig.suptitle(f"{title}\n(outlined: active in the final checkpoint)", fontsize=11)
    fig.tight_layout()
    return fig


def faithfulness_figure(curves: pl.DataFrame, title: str) -> Figure:
    _theme()
    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=DPI)
    data = curves.filter(pl.col("edge_fraction") > 0).to_pandas()
    sns.lineplot(data=data, x="edge_fraction", y="faithfulness", hue="step", palette="viridis", marker="o", ax=ax)
    ax.set_xscale("log")
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xlabel("circuit size (fraction of edges, top by |EAP-IG score|)")
    ax.set_ylabel("faithfulness")
    ax.set_title(title)
    ax.legend(title="checkpoint", fontsize=8)
    fig.tight_layout()
    return fig


def save(fig: Figure, stem: Path) -> list[Path]:
    """Write ``stem``.png and ``stem``.svg atomically; closes the figure."""
    return save_files(fig, [stem.with_suffix(".png"), stem.with_suffix(".svg")])


def save_files(fig: Figure, paths: list[Path]) -> list[Path]:
    """Write the figure to each of ``paths`` (format from the suffix) atomically; closes it."""
    for path in paths:
        with atomic_file(path, suffix=path.suffix) as tmp:
            fig.savefig(tmp, format=path.suffix.lstrip("."))
    plt.close(fig)
    return list(paths)


def accuracy_figure(passk: pl.DataFrame, title: str) -> Figure:
    """Sampled accuracy by difficulty across checkpoints, with 95 % normal intervals from the
    standard error over problems (the passk tables of every checkpoint)."""
    _theme()
    table = passk.filter(pl.col("k_samples") == 1).sort("step")
    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=DPI)
    for difficulty, color in zip(sorted(table["difficulty"].unique()), sns.color_palette("colorblind")):
        part = table.filter(pl.col("difficulty") == difficulty)
        steps, accuracy, half = part["step"], part["accuracy"], 1.96 * part["accuracy_se"].fill_null(0)
        ax.plot(steps, accuracy, marker="o", color=color, label=difficulty)
        ax.fill_between(steps, accuracy - half, accuracy + half, color=color, alpha=0.2, linewidth=0)
    ax.legend(title="difficulty")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("checkpoint (training step)")
    ax.set_ylabel("accuracy (sampled; 95 % CI over problems)")
    ax.set_title(title)
    fig.tight_layout()
    return fig


PASSK_PANELS = {
    "pass_at_k": "pass@k\n(one of k drawn)",
    "success_at_k": "success@k\n(one of the first k)",
    "all_correct_at_k": "all-correct@k\n(all k drawn)",
}


def passk_figure(table: pl.DataFrame, title: str) -> Figure:
    """pass@k (unbiased), success@k (the study's: a correct answer among the first k samples in
    generation order) and all-correct@k against k, by difficulty, base vs final checkpoint."""
    _theme()
    fig, axes = plt.subplots(1, 3, figsize=FIGSIZE, dpi=DPI, sharey=True)
    data = table.to_pandas()
    for ax, (column, name) in zip(axes, PASSK_PANELS.items()):
        sns.lineplot(
            data=data,
            x="k_samples",
            y=column,
            hue="difficulty",
            hue_order=sorted(table["difficulty"].unique()),
            style="checkpoint",
            marker="o",
            ax=ax,
        )
        ax.set_xlabel("k (samples drawn)")
        ax.set_title(name)
        ax.set_ylim(-0.02, 1.02)
    axes[0].set_ylabel("share of problems")
    for ax in axes[1:]:
        ax.get_legend().remove()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


HEADS_FROM = {  # the interventions' heads_from, as the figures label them
    "none": "unmodified",
    "emergent": "emergent heads",
    "think_off_only": "think-off-only heads",
    "think_on_only": "think-on-only heads",
    "same_layer": "random, same layers",
    "base_circuit": "base-circuit heads",
    "outside": "outside every circuit",
}


def scaling_figure(interventions: pl.DataFrame, title: str) -> Figure:
    """Left: accuracy of the base model with the emergent heads (or each control's heads, mean
    over draws) scaled by alpha. Right: the final checkpoint with those heads ablated."""
    _theme()
    fig, (left, right) = plt.subplots(1, 2, figsize=FIGSIZE, dpi=DPI, sharey=True)
    interventions = interventions.with_columns(pl.col("heads_from").replace(HEADS_FROM))
    scale = interventions.filter(pl.col("kind") == "scale")
    plain = scale.filter(pl.col("heads_from") == HEADS_FROM["none"])
    curves = []
    for source in list(HEADS_FROM.values())[1:]:
        part = scale.filter(pl.col("heads_from") == source)
        if part.height:
            curves.append(pl.concat([part, plain.with_columns(pl.lit(source).alias("heads_from"), pl.lit(1.0).alias("alpha"))]))
    if curves:
        data = pl.concat(curves).to_pandas()
        sns.lineplot(
            data=data,
            x="alpha",
            y="accuracy",
            hue="difficulty",
            hue_order=sorted(scale["difficulty"].unique()),
            style="heads_from",
            marker="o",
            errorbar="sd",
            ax=left,
        )
    left.set_title("scaling in the base model")
    left.set_xlabel("alpha (1 = unmodified)")
    left.set_ylabel("accuracy (controls: mean +- sd over draws)")
    ablate = interventions.filter(pl.col("kind") == "ablate").to_pandas()
    if len(ablate):
        sns.barplot(
            data=ablate,
            x="difficulty",
            y="accuracy",
            order=sorted(set(ablate["difficulty"])),
            hue="heads_from",
            hue_order=[h for h in HEADS_FROM.values() if h in set(ablate["heads_from"])],
            errorbar="sd",
            ax=right,
        )
    right.set_title("ablation in the final checkpoint")
    left.set_ylim(-0.02, 1.02)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


THINK_COLOURS = {  # colourblind palette: both, think on only, think off only, neither
    "both": "#0173b2",
    "think_on_only": "#de8f05",
    "think_off_only": "#029e73",
    "neither": "#eeeeee",
}


def think_modes_figure(table: pl.DataFrame, overlap: pl.DataFrame, title: str) -> Figure:
    """Layer x head grid per compared checkpoint, each head coloured by the think modes it is
    active in (the think_modes table), the counts and Jaccard index in each title (think_overlap)."""
    from matplotlib.colors import ListedColormap

    from sparks.registry import THINK_MODES as MODES

    _theme()
    steps = sorted(table["step"].unique())
    n_layers, n_heads = table["layer"].max() + 1, table["head"].max() + 1
    summary = {row["step"]: row for row in overlap.iter_rows(named=True)}
    fig, axes = plt.subplots(1, len(steps), figsize=FIGSIZE, dpi=DPI, sharey=True, squeeze=False)
    cmap = ListedColormap([THINK_COLOURS[m] for m in MODES])
    for ax, step in zip(axes[0], steps):
        grid = np.zeros((n_layers, n_heads))
        for row in table.filter(pl.col("step") == step).iter_rows(named=True):
            grid[row["layer"], row["head"]] = MODES.index(row["mode"])
        sns.heatmap(grid, ax=ax, cmap=cmap, vmin=-0.5, vmax=len(MODES) - 0.5, cbar=False, square=True,
                    linewidths=0.5, linecolor="white")  # fmt: skip
        s = summary[step]
        jaccard = "n/a" if s["jaccard"] is None else f"{s['jaccard']:.2f}"
        ax.set_title(
            f"step {step}: both {s['both']}, on only {s['think_on_only']}, off only {s['think_off_only']}\nJaccard {jaccard}",
            fontsize=9,
        )
        ax.set_xlabel("head")
    axes[0][0].set_ylabel("layer")
    handles = [Rectangle((0, 0), 1, 1, color=THINK_COLOURS[m]) for m in MODES]
    fig.legend(handles, [m.replace("_", " ") for m in MODES], loc="lower center", ncol=len(MODES), fontsize=9)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


CATEGORY_COLOURS = {  # colourblind palette, correct in grey so the failures stand out
    "correct": "#cccccc",
    "calculation_error": "#d55e00",
    "loop": "#cc78bc",
    "truncated": "#0173b2",
    "format": "#ece133",
    "wrong_plan": "#029e73",
}


def _stacked_shares(ax, shares: pl.DataFrame, x: str, labels: list) -> None:
    from sparks.registry import FAILURE_CATEGORIES

    bottom = np.zeros(len(labels))
    for category in FAILURE_CATEGORIES:
        values = np.array([shares.filter(pl.col(x) == label)[category].sum() for label in labels])
        ax.bar(range(len(labels)), values, bottom=bottom, color=CATEGORY_COLOURS[category], label=category.replace("_", " "))
        bottom += values
    ax.set_xticks(range(len(labels)), [str(label) for label in labels], rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 1)


def _failure_panels(shares: pl.DataFrame, x: str, labels: list, title: str, xlabel: str) -> Figure:
    """One panel per difficulty of stacked category shares (rows of the failure_shares table)."""
    _theme()
    difficulties = shares["difficulty"].unique(maintain_order=True).to_list()  # the eval order: easy first
    fig, axes = plt.subplots(1, len(difficulties), figsize=FIGSIZE, dpi=DPI, sharey=True, squeeze=False)
    for ax, difficulty in zip(axes[0], difficulties):
        _stacked_shares(ax, shares.filter(pl.col("difficulty") == difficulty), x, labels)
        ax.set_title(difficulty, fontsize=10)
        ax.set_xlabel(xlabel)
    axes[0][0].set_ylabel("share of samples")
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=3, fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def failures_figure(shares: pl.DataFrame, title: str) -> Figure:
    """Failure categories by difficulty across checkpoints (eval samples), stacked shares."""
    evals = shares.filter(pl.col("origin") == "eval")
    return _failure_panels(evals, "step", sorted(evals["step"].unique()), title, "checkpoint step")


def failure_scaling_figure(shares: pl.DataFrame, title: str) -> Figure:
    """Failure categories of the starting model with its emergent heads scaled, next to the same
    scaling of each control's heads (draws pooled) and the unmodified model."""
    scaled = shares.filter(pl.col("kind") == "scale").with_columns(
        pl.when(pl.col("heads_from") == "none")
        .then(pl.lit("unmodified"))
        .otherwise(pl.format("{} x{}", pl.col("heads_from"), pl.col("alpha")))
        .alias("condition")
    )
    labels = ["unmodified"] + sorted(c for c in scaled["condition"].unique() if c != "unmodified")
    return _failure_panels(scaled, "condition", labels, title, "")


def tokens_figure(shares: pl.DataFrame, title: str) -> Figure:
    """Generated tokens per correct answer (all tokens spent / correct samples) by difficulty."""
    _theme()
    table = shares.filter(pl.col("origin") == "eval").sort("step")
    table = table.rename({"tokens_per_correct": "tokens per correct answer"})
    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=DPI)
    sns.lineplot(table.to_pandas(), x="step", y="tokens per correct answer", hue="difficulty", marker="o", ax=ax)
    ax.set_yscale("log")
    ax.set_title(title, fontsize=11)
    fig.tight_layout()
    return fig
