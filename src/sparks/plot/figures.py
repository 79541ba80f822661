"""The figures of one run (seaborn/matplotlib, Agg backend; no global state is touched at import).

Each figure has a ``draw_*`` function that draws one run on given axes; the per-run figures and
the report's side-by-side figures (``sparks.plot.compare``, one facet per run) both use them, so
a run looks the same in both. Difficulties come in the task's order with one colour each
(``sparks.plot.style``).

- cohorts: per checkpoint, every head of its circuit counted once by its status at that
  checkpoint (the circuit table's ``status``): maintained base heads, emergent heads by cohort,
  new heads not (yet) stable; lost base heads below zero; bars at the checkpoints, nothing
  interpolated between them; the run's reward (GRPO) or loss below;
- frequency: layer x head heatmap of activation frequency, base heads dotted, emergent heads
  outlined;
- faithfulness: the faithfulness curve of every checkpoint, the circuit size used marked.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from sparks.plot.canvas import FIGSIZE, theme
from sparks.plot.style import DPI, difficulty_palette

BASE_DASHES = (4, 2)  # the base checkpoint's line wherever base and final are drawn together (final: solid)
STATUS_COLOURS = {"maintained": "#999999", "transient": "#cc79a7", "new": "#f0e442", "lost": "#d55e00"}
STATUS_LABELS = {
    "maintained": "maintained (base heads still active)",
    "transient": "transient (called, gone by the final checkpoint)",
    "new": "new, not (yet) called",
    "lost": "lost (base heads no longer active)",
}


def status_counts(circuit: pl.DataFrame, cohorts: pl.DataFrame) -> pl.DataFrame:
    """Heads per checkpoint by band, from the circuit table's per-checkpoint ``status``: maintained,
    ``emergent {cohort_step}`` (one band per cohort), transient, new, and lost (counted negative). The
    positive bands of a step sum to the heads in its circuit. Columns: step, band, n_heads."""
    cohort = cohorts.filter(pl.col("status") == "emergent").select("layer", "head", "cohort_step")
    rows = circuit.filter(pl.col("status") != "inactive").join(cohort, on=["layer", "head"], how="left")
    band = (
        pl.when(pl.col("status") == "emergent").then(pl.format("emergent {}", pl.col("cohort_step"))).otherwise(pl.col("status"))
    )
    counts = rows.group_by("step", band.alias("band")).agg(pl.len().cast(pl.Int64).alias("n_heads"))
    counts = counts.with_columns(
        pl.when(pl.col("band") == "lost").then(-pl.col("n_heads")).otherwise(pl.col("n_heads")).alias("n_heads")
    )
    grid = circuit.select("step").unique().join(counts.select("band").unique(), how="cross")
    return (
        grid.join(counts, on=["step", "band"], how="left")
        .with_columns(pl.col("n_heads").fill_null(0))
        .sort("step", pl.col("band").map_elements(_band_order, return_dtype=pl.List(pl.Int64)))
    )


def _band_order(band: str) -> list[int]:
    if band.startswith("emergent"):
        return [1, int(band.split()[-1])]
    return [{"maintained": 0, "transient": 2, "new": 3, "lost": 4}[band], 0]


def _steps_width(steps: Sequence[int]) -> float:
    gaps = np.diff(sorted(steps)) if len(steps) > 1 else [1]
    return 0.7 * float(min(gaps))


def cohort_palette(cohort_steps: Sequence[int]) -> dict[int, str]:
    """One colour per cohort step (the same step, the same colour in every run's facet)."""
    steps = sorted(set(cohort_steps))
    taken = ("#d55e00", "#949494", "#ece133", "#cc78bc")
    free = [c for c in sns.color_palette("colorblind", 10).as_hex() if c not in taken]
    return {step: free[i % len(free)] for i, step in enumerate(steps)}  # never lost's, maintained's, new's or transient's colour


def draw_cohorts(
    ax: Axes, circuit: pl.DataFrame, cohorts: pl.DataFrame, legend: bool = True, colours: dict[int, str] | None = None
) -> None:
    """Stacked bars at each checkpoint (status_counts): maintained, emergent cohorts, transient, new; lost
    below zero. ``colours``: cohort step -> colour (default: ``cohort_palette`` of this run's)."""
    counts = status_counts(circuit, cohorts)
    steps = sorted(circuit["step"].unique().to_list())
    width = _steps_width(steps)
    bands = sorted(counts["band"].unique().to_list(), key=_band_order)
    colours = colours or cohort_palette([int(b.split()[-1]) for b in bands if b.startswith("emergent")])
    bottom = np.zeros(len(steps))
    for band in bands:
        values = np.array([counts.filter((pl.col("step") == s) & (pl.col("band") == band))["n_heads"].sum() for s in steps])
        colour = colours[int(band.split()[-1])] if band.startswith("emergent") else STATUS_COLOURS[band]
        label = f"emergent, cohort step {band.split()[-1]}" if band.startswith("emergent") else STATUS_LABELS[band]
        base = np.zeros(len(steps)) if band == "lost" else bottom
        ax.bar(steps, values, width=width, bottom=base, color=colour, label=label, edgecolor="white", linewidth=0.5,
               hatch="//" if band == "new" else None)  # fmt: skip
        if band != "lost":
            bottom = bottom + values
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(steps)
    ax.set_ylabel("heads in the circuit")
    if legend and bands:
        ax.legend(loc="upper left", fontsize=7, ncol=2)
        low, high = ax.get_ylim()
        ax.set_ylim(low, high + 0.45 * (high - low))  # room for the legend above the bars


def draw_training_curve(ax: Axes, train_log: pl.DataFrame, steps: Sequence[int]) -> None:
    """The run's reward (GRPO) or loss per training step, checkpoints dotted."""
    metric = "reward" if train_log["reward"].null_count() < train_log.height else "loss"
    log = train_log.filter(pl.col(metric).is_not_null()).sort("step")
    colour = sns.color_palette("colorblind")[0]
    ax.plot(log["step"], log[metric], color=colour, linewidth=0.8, alpha=0.5)
    if log.height >= 10:
        window = max(1, log.height // 20)
        smooth = log[metric].rolling_mean(window, min_samples=1)
        ax.plot(log["step"], smooth, color=colour, linewidth=2, label=f"{metric} (mean of {window} steps)")
        ax.legend(loc="best", fontsize=7)
    if log.is_empty():  # a run of given checkpoints without a trainer's log history
        ax.text(0.5, 0.5, "no training log (checkpoints given)", ha="center", va="center", transform=ax.transAxes)
        ax.set_yticks([])
    for step in steps:
        ax.axvline(step, color="grey", linewidth=0.5, linestyle=":")
    ax.set_ylabel(metric)
    ax.set_xlabel("training step (checkpoints dotted)")


def cohort_figure(circuit: pl.DataFrame, cohorts: pl.DataFrame, train_log: pl.DataFrame, title: str) -> Figure:
    theme()
    steps = sorted(circuit["step"].unique().to_list())
    fig, (top, bottom) = plt.subplots(2, 1, figsize=FIGSIZE, dpi=DPI, sharex=True, height_ratios=[2, 1])
    draw_cohorts(top, circuit, cohorts)
    top.set_title(title, fontsize=11)
    draw_training_curve(bottom, train_log, steps)
    fig.tight_layout()
    return fig


def importance_figure(importance: pl.DataFrame, cohorts: pl.DataFrame, title: str) -> Figure:
    """Layer x head grid of each head's effect (the study's Eq. 8-9: importance after vs before,
    averaged over the checkpoints after the first), emergent heads outlined."""
    theme()
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


def draw_frequency(ax: Axes, frequency: pl.DataFrame, cohorts: pl.DataFrame, colorbar: bool = True) -> None:
    """Layer x head grid of each head's activation frequency (share of checkpoints whose circuit
    holds it); base-circuit heads dotted, emergent heads outlined in black."""
    n_layers, n_heads = frequency["layer"].max() + 1, frequency["head"].max() + 1
    grid = np.zeros((n_layers, n_heads))
    for layer, head, value in frequency.select("layer", "head", "frequency").rows():
        grid[layer, head] = value
    sns.heatmap(grid, ax=ax, vmin=0, vmax=1, cmap="viridis", square=True, cbar=colorbar, linewidths=0.5,
                linecolor="white", cbar_kws={"label": "activation frequency", "shrink": 0.7})  # fmt: skip
    for layer, head in frequency.filter(pl.col("active_in_base")).select("layer", "head").rows():
        ax.plot(head + 0.5, layer + 0.5, marker="o", markersize=3, color="white", markeredgecolor="black")
    for layer, head in cohorts.filter(pl.col("status") == "emergent").select("layer", "head").rows():
        ax.add_patch(Rectangle((head, layer), 1, 1, fill=False, edgecolor="black", linewidth=2))
    ax.set_xlabel("head")
    ax.set_ylabel("layer")


def frequency_figure(frequency: pl.DataFrame, cohorts: pl.DataFrame, title: str) -> Figure:
    theme()
    n_layers, n_heads = frequency["layer"].max() + 1, frequency["head"].max() + 1
    fig, ax = plt.subplots(figsize=(min(12, 2 + 0.45 * n_heads), min(12, 1.2 + 0.45 * n_layers)), dpi=DPI)
    draw_frequency(ax, frequency, cohorts)
    ax.set_title(f"{title}\n(dot: base circuit; outlined: emergent)", fontsize=10)
    fig.tight_layout()
    return fig


def faithfulness_figure(curves: pl.DataFrame, title: str, circuit_edges: int | None = None) -> Figure:
    """Faithfulness against circuit size per checkpoint; ``circuit_edges``, the size the circuits
    use (aggregate.top_n), marked when fixed."""
    theme()
    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=DPI)
    data = curves.filter(pl.col("edge_fraction") > 0).to_pandas()
    if circuit_edges and len(data):
        total = float((data["n_edges"] / data["edge_fraction"]).median())
        ax.axvline(circuit_edges / total, color="black", linewidth=1, linestyle="--")
        ax.text(
            circuit_edges / total,
            0.02,
            f" circuit used: top {circuit_edges} edges",
            transform=ax.get_xaxis_transform(),
            fontsize=8,
        )
    sns.lineplot(data=data, x="edge_fraction", y="faithfulness", hue="step", palette="viridis", marker="o", ax=ax)
    ax.set_xscale("log")
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xlabel("circuit size (fraction of edges, top by |EAP-IG score|)")
    ax.set_ylabel("faithfulness")
    ax.set_title(title)
    ax.legend(title="checkpoint", fontsize=8)
    fig.tight_layout()
    return fig


def draw_accuracy(ax: Axes, passk: pl.DataFrame, order: Sequence[str], emergence_steps: Sequence[int] = ()) -> None:
    """Sampled accuracy by difficulty across checkpoints with 95 % normal intervals from the
    standard error over problems; the steps at which a cohort of emergent heads appeared dashed."""
    table = passk.filter(pl.col("k_samples") == 1).sort("step")
    for difficulty, colour in difficulty_palette(order).items():
        part = table.filter(pl.col("difficulty") == difficulty)
        if part.is_empty():
            continue
        steps, accuracy, half = part["step"], part["accuracy"], 1.96 * part["accuracy_se"].fill_null(0)
        ax.plot(steps, accuracy, marker="o", color=colour, label=difficulty)
        ax.fill_between(steps, accuracy - half, accuracy + half, color=colour, alpha=0.2, linewidth=0)
    for i, step in enumerate(sorted(set(emergence_steps))):
        ax.axvline(step, color="black", linewidth=0.8, linestyle="--", label="emergent cohort" if i == 0 else None)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("checkpoint (training step)")
    ax.set_ylabel("accuracy (95 % CI over problems)")


def accuracy_figure(passk: pl.DataFrame, title: str, order: Sequence[str] = (), emergence_steps: Sequence[int] = ()) -> Figure:
    """``draw_accuracy`` on its own; ``order``: the task's difficulties (default: as found)."""
    theme()
    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=DPI)
    draw_accuracy(ax, passk, order or passk["difficulty"].unique(maintain_order=True).to_list(), emergence_steps)
    ax.legend(title="difficulty", fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return fig


PASSK_PANELS = {
    "pass_at_k": "pass@k\n(one of k drawn)",
    "success_at_k": "success@k\n(one of the first k)",
    "all_correct_at_k": "all-correct@k\n(all k drawn)",
}


def passk_figure(table: pl.DataFrame, title: str, order: Sequence[str] = ()) -> Figure:
    """pass@k (unbiased), success@k (the study's: a correct answer among the first k samples in
    generation order) and all-correct@k against k, by difficulty, base (dashed) vs final (solid)
    checkpoint, as in every figure that shows both."""
    theme()
    fig, axes = plt.subplots(1, 3, figsize=FIGSIZE, dpi=DPI, sharey=True)
    data = table.to_pandas()
    labels = sorted(table["checkpoint"].unique().to_list(), key=lambda c: not c.startswith("base"))
    dashes = {label: BASE_DASHES if label.startswith("base") else "" for label in labels}
    palette = difficulty_palette(order or table["difficulty"].unique(maintain_order=True).to_list())
    for ax, (column, name) in zip(axes, PASSK_PANELS.items()):
        sns.lineplot(
            data=data,
            x="k_samples",
            y=column,
            hue="difficulty",
            hue_order=list(palette),
            palette=palette,
            style="checkpoint",
            style_order=labels,
            dashes=dashes,
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


def scaling_figure(interventions: pl.DataFrame, title: str, order: Sequence[str] = ()) -> Figure:
    """Left: accuracy of the base model with the emergent heads (or each control's heads, mean
    over draws) scaled by alpha. Right: the final checkpoint with those heads ablated."""
    theme()
    fig, (left, right) = plt.subplots(1, 2, figsize=FIGSIZE, dpi=DPI, sharey=True)
    palette = difficulty_palette(order or interventions["difficulty"].unique(maintain_order=True).to_list())
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
            hue_order=[d for d in palette if d in set(scale["difficulty"])],
            palette=palette,
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
            order=[d for d in palette if d in set(ablate["difficulty"])],
            hue="heads_from",
            hue_order=[h for h in HEADS_FROM.values() if h in set(ablate["heads_from"])],
            errorbar="sd",
            ax=right,
        )
    right.set_title("ablation in the final checkpoint")
    for ax, title in ((left, None), (right, "heads")):  # legends below the panels, never over the data
        if ax.get_legend() is not None:
            titled = {} if title is None else {"title": title}
            sns.move_legend(ax, "upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize=7, frameon=False, **titled)
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

    theme()
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
    "no_trace": "#56b4e9",
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


def _failure_panels(shares: pl.DataFrame, x: str, labels: list, title: str, xlabel: str, order: Sequence[str] = ()) -> Figure:
    """One panel per difficulty (the task's order) of stacked category shares (rows of the failure_shares table)."""
    theme()
    found = set(shares["difficulty"])
    difficulties = [d for d in order if d in found] or shares["difficulty"].unique(maintain_order=True).to_list()
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


def failures_figure(shares: pl.DataFrame, title: str, order: Sequence[str] = ()) -> Figure:
    """Failure categories by difficulty across checkpoints (eval samples), stacked shares."""
    evals = shares.filter(pl.col("origin") == "eval")
    return _failure_panels(evals, "step", sorted(evals["step"].unique()), title, "checkpoint step", order)


def failure_scaling_figure(shares: pl.DataFrame, title: str, order: Sequence[str] = ()) -> Figure:
    """Failure categories of the starting model with its emergent heads scaled, next to the same
    scaling of each control's heads (draws pooled) and the unmodified model."""
    scaled = shares.filter(pl.col("kind") == "scale").with_columns(
        pl.when(pl.col("heads_from") == "none")
        .then(pl.lit("unmodified"))
        .otherwise(pl.format("{} x{}", pl.col("heads_from"), pl.col("alpha")))
        .alias("condition")
    )
    labels = ["unmodified"] + sorted(c for c in scaled["condition"].unique() if c != "unmodified")
    return _failure_panels(scaled, "condition", labels, title, "", order)


def tokens_figure(shares: pl.DataFrame, title: str, order: Sequence[str] = ()) -> Figure:
    """Generated tokens per correct answer (all tokens spent / correct samples) by difficulty."""
    theme()
    table = shares.filter(pl.col("origin") == "eval").sort("step")
    table = table.rename({"tokens_per_correct": "tokens per correct answer"})
    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=DPI)
    palette = difficulty_palette(order or table["difficulty"].unique(maintain_order=True).to_list())
    sns.lineplot(table.to_pandas(), x="step", y="tokens per correct answer", hue="difficulty", hue_order=list(palette),
                 palette=palette, marker="o", ax=ax)  # fmt: skip
    ax.set_yscale("log")
    ax.set_title(title, fontsize=11)
    fig.tight_layout()
    return fig
