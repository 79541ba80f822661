"""Figures and report section of a replicated run (runs.<name>.seeds): how often each head emerges
across replicates, accuracy with the replicates' spread, cohort counts with intervals, and the
study's claims tested across replicates."""

from __future__ import annotations

import html
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from sparks.atomic import atomic_file
from sparks.plot.canvas import FIGSIZE, save_files, theme
from sparks.plot.report import machine_section
from sparks.plot.style import DPI, embedded_image, html_table, order_difficulty
from sparks.tables import PROVENANCE


def same_base(heads: pl.DataFrame) -> bool:
    """Replicates on one base: their replicate_heads table has a robust set (null for base replicates)."""
    return not heads["robust"].is_null().all()


def share_figure(heads: pl.DataFrame, n_layers: int, n_heads: int, title: str) -> Figure:
    """Layer x head: the share of replicates in which each head is emergent; robust heads outlined."""
    theme()
    per_head = heads.select("layer", "head", "share", "emergent_in", "n_replicates", "robust").unique()
    grid = np.zeros((n_layers, n_heads))
    labels = np.full((n_layers, n_heads), "", dtype=object)
    for row in per_head.iter_rows(named=True):
        grid[row["layer"], row["head"]] = row["share"]
        if row["emergent_in"]:
            labels[row["layer"], row["head"]] = f"{row['emergent_in']}/{row['n_replicates']}"
    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=DPI)
    sns.heatmap(
        grid, vmin=0, vmax=1, cmap="viridis", square=True, annot=labels, fmt="", linewidths=0.5, linecolor="white",
        cbar_kws={"label": "share of replicates in which the head is emergent", "shrink": 0.7}, ax=ax,
    )  # fmt: skip
    for layer, head in per_head.filter(pl.col("robust")).select("layer", "head").rows():
        ax.add_patch(Rectangle((head, layer), 1, 1, fill=False, edgecolor="#d55e00", linewidth=2.5))
    ax.set_xlabel("head (outlined: robust, the set the interventions target)")
    ax.set_ylabel("layer")
    ax.set_title(title, fontsize=11)
    fig.tight_layout()
    return fig


def layer_figure(counts: pl.DataFrame, title: str) -> Figure:
    """Emergent heads per layer in each replicate (base replicates: what compares across bases)."""
    theme()
    per_layer = counts.filter((pl.col("status") == "emergent") & pl.col("layer").is_not_null()).sort("layer")
    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=DPI)
    n = per_layer["n_replicates"].max() or 0
    width = 0.8 / max(n, 1)
    for i, color in zip(range(n), sns.color_palette("colorblind")):
        x = per_layer["layer"].cast(pl.Float64) + (i - (n - 1) / 2) * width
        ax.bar(x, [c[i] for c in per_layer["counts"]], width, color=color, label=f"replicate {i + 1}")
    ax.set_xticks(per_layer["layer"].to_list())
    ax.set_xlabel("layer")
    ax.set_ylabel("emergent heads")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=11)
    fig.tight_layout()
    return fig


def replicate_accuracy_figure(accuracy: pl.DataFrame, difficulties: list[str], title: str) -> Figure:
    """Accuracy by difficulty across checkpoints: mean over replicates, its 95 % t interval (band)
    and the replicates' range (dotted)."""
    theme()
    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=DPI)
    for difficulty, color in zip(difficulties, sns.color_palette("colorblind")):
        part = accuracy.filter(pl.col("difficulty") == difficulty).sort("step")
        if part.is_empty():
            continue
        steps = part["step"]
        ax.plot(steps, part["accuracy_mean"], marker="o", color=color, label=difficulty)
        ax.fill_between(
            steps,
            part["accuracy_low"].fill_null(part["accuracy_mean"]),
            part["accuracy_high"].fill_null(part["accuracy_mean"]),
            color=color,
            alpha=0.2,
            linewidth=0,
        )
        for bound in ("accuracy_min", "accuracy_max"):
            ax.plot(steps, part[bound], color=color, linestyle=":", linewidth=0.8)
    ax.legend(title="difficulty")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("checkpoint (training step)")
    ax.set_ylabel("accuracy: mean over replicates (band 95 % t interval, dotted range)")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def counts_figure(counts: pl.DataFrame, title: str) -> Figure:
    """Heads per cohort status: mean over replicates with its 95 % t interval, each replicate a dot."""
    theme()
    counts = counts.filter(pl.col("layer").is_null())
    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=DPI)
    colors = sns.color_palette("colorblind")
    for i, row in enumerate(counts.iter_rows(named=True)):
        ax.bar(i, row["mean"], color=colors[i], alpha=0.6)
        if row["low"] is not None:
            ax.errorbar(i, row["mean"], yerr=[[row["mean"] - row["low"]], [row["high"] - row["mean"]]], color="black", capsize=6)
        ax.scatter([i] * len(row["counts"]), row["counts"], color="black", zorder=3, s=18)
    ax.set_xticks(range(counts.height), counts["status"].to_list())
    ax.set_ylabel("heads per replicate (bar: mean, whisker: 95 % t interval)")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_replicates(
    tables: dict[str, pl.DataFrame], difficulties: list[str], group: str, task: str, outputs: list[Path]
) -> list[Path]:
    """Draw sparks.plot.REPLICATE_FIGURES of a replicated run into ``outputs`` (``{task}_{name}.png`` and ``.svg`` each)."""
    n = tables["replicate_counts"]["n_replicates"][0]
    heads = tables["replicate_heads"]  # every head of the model: the frequency tables list them all
    shape = (heads["layer"].max() + 1, heads["head"].max() + 1)
    if same_base(heads):
        head_figure = share_figure(heads, *shape, f"{group} on {task}: emergent heads across {n} replicates")
    else:
        head_figure = layer_figure(tables["replicate_counts"], f"{group} on {task}: emergent heads by layer, {n} base replicates")
    figures = {
        "replicate_heads": head_figure,
        "replicate_accuracy": replicate_accuracy_figure(
            tables["replicate_accuracy"], difficulties, f"{group} on {task}: accuracy over {n} replicates"
        ),
        "replicate_counts": counts_figure(
            tables["replicate_counts"], f"{group} on {task}: heads by cohort status, {n} replicates"
        ),
    }
    written = []
    for name, fig in figures.items():
        paths = [p for p in outputs if Path(p).stem == f"{task}_{name}"]
        if not paths:
            raise ValueError(f"no output file named {task}_{name}.png/.svg among --figures")
        written += save_files(fig, [Path(p) for p in paths])
    return written


def _content(table: pl.DataFrame, keep: tuple[str, ...] = ()) -> pl.DataFrame:
    """A table without its provenance columns (the section states them once), but ``keep``."""
    return table.drop([c for c in PROVENANCE if c in table.columns and c not in keep])


def _provenance(tables: dict[str, pl.DataFrame]) -> list[str]:
    """The section's provenance, once: experiment, config hashes, sparks version, when, and where."""
    rows = pl.concat([t.select("experiment", "config_hash", "sparks_version", "created_at") for t in tables.values()])
    made = rows["created_at"].max().strftime("%Y-%m-%d %H:%M UTC")
    hashes = ", ".join(sorted(rows["config_hash"].unique().to_list()))
    return [
        f"<p class='note'>Tables of experiment {html.escape(rows['experiment'][0])}, config hash {html.escape(hashes)}, "
        f"sparks {html.escape(rows['sparks_version'][0])}, made by {made}.</p>",
        *machine_section(tables.values()),
    ]


def replicates_section(tables: dict[str, pl.DataFrame], images: list[Path], group: str, task: str, order: list[str]) -> str:
    """The HTML of a replicated run: the claims first, then figures and the tables behind them;
    ``order``: the task's difficulties, easiest first."""
    heads, claims = tables["replicate_heads"], tables["replicate_claims"]
    seeds = heads.select("replicate", "seed").unique().sort("seed")
    robust = (
        heads.filter(pl.col("robust"))
        .sort("seed")
        .group_by("layer", "head", maintain_order=True)
        .agg(
            pl.col("share").first(),
            pl.format("{}: {}", "replicate", pl.col("cohort_step").cast(pl.String).fill_null("-"))
            .str.join(", ")
            .alias("cohort step per replicate"),
        )
        .sort("layer", "head")
        .select(pl.format("a{}.h{}", "layer", "head").alias("head"), "share", "cohort step per replicate")
    )
    reward = _content(tables["replicate_reward"].drop("replicate_r"))
    accuracy = tables["replicate_accuracy"]
    final = order_difficulty(_content(accuracy.filter(pl.col("step") == accuracy["step"].max())), order)
    listed = html.escape(", ".join(f"{r} (seed {s})" for r, s in seeds.rows()))
    if same_base(heads):
        setup = (
            f"Replicates {listed} share the base and differ in the trainer seed only (data order, sampling), so a head "
            "means the same head in each. The robust set is what every replicate's interventions target."
        )
    else:
        setup = (
            f"Base replicates {listed}: each was pre-trained with its own seed and post-trained alike. Heads of two bases "
            "are interchangeable up to a permutation, so only counts, layers, cohort timing, accuracy and effect sizes "
            "are compared; each replicate intervenes on its own emergent heads."
        )
    parts = [
        f'<details id="run-{html.escape(group)}"><summary>Replicated run {html.escape(group)} in detail (task {html.escape(task)}): '
        f"{seeds.height} replicates compared</summary>",
        f"<p>{setup} Intervals are 95 % Student t over replicates, their spread at least the values' sampling error.</p>",
        "<h3>The study's claims across replicates</h3>",
        html_table(
            claims.select(
                "claim", "verdict", "value", "low", "high", "p_value", "p_adjusted", "n_replicates", "statistic", "detail"
            )
        ),
        "<h3>Robust emergent heads</h3>",
        html_table(robust) if robust.height else "<p>No head is emergent in enough replicates.</p>",
    ]
    parts += [embedded_image(path) for path in images]
    parts += [
        "<h3>Agreement between replicates (emergent sets)</h3>",
        html_table(_content(tables["replicate_jaccard"])),
        "<h3>Heads by cohort status (all layers)</h3>",
        html_table(
            _content(tables["replicate_counts"])
            .filter(pl.col("layer").is_null())
            .drop("layer")
            .with_columns(pl.col("counts").cast(pl.List(pl.String)).list.join(" "))
        ),
        "<h3>Cohort timing per replicate</h3>",
        html_table(_content(tables["replicate_timing"]), headers={"seed": "seed"}),  # a replicate's seed, not a draw
        "<h3>Emergent heads against reward</h3>",
        html_table(reward),
        "<h3>Final accuracy against the shared base</h3>",
        html_table(final),
        *_provenance(tables),
        "</details>",
    ]
    return "\n".join(parts)


def write_replicates_section(
    tables: dict[str, pl.DataFrame], images: list[Path], group: str, task: str, order: list[str], out: Path
) -> Path:
    with atomic_file(out) as tmp:
        tmp.write_text(replicates_section(tables, images, group, task, order))
    return Path(out)
