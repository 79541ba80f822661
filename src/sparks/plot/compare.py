"""The report's side-by-side figures: one figure per concept, one facet per run, each drawn by the
same ``draw_*`` function as the run's own figure (``sparks.plot.figures``) from the same tables,
with a caption that says what it shows, the definition it uses and how to read it.

Figures are returned as SVG text (vector, sharp at any zoom) for the report to embed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import polars as pl
from matplotlib.figure import Figure

from sparks.plot import figures as f
from sparks.plot.canvas import svg, theme
from sparks.plot.style import DPI, difficulty_palette, run_palette

COLUMNS = 3  # facets per row


@dataclass(frozen=True)
class Comparison:
    name: str
    title: str
    caption: str
    svg: str


def _grid(n_runs: int, rows_per_run: int, height: float, height_ratios: Sequence[float] | None = None):
    """A figure with ``rows_per_run`` rows of axes per facet, ``COLUMNS`` facets per row."""
    columns = min(COLUMNS, n_runs)
    blocks = math.ceil(n_runs / columns)
    fig, axes = plt.subplots(
        blocks * rows_per_run,
        columns,
        figsize=(4.2 * columns, height * blocks),
        dpi=DPI,
        squeeze=False,
        height_ratios=list(height_ratios or [1] * rows_per_run) * blocks,
    )
    facets = []
    for i in range(blocks * columns):
        block, column = divmod(i, columns)
        cells = [axes[block * rows_per_run + r][column] for r in range(rows_per_run)]
        if i < n_runs:
            facets.append(cells)
        else:
            for ax in cells:
                ax.set_visible(False)
    return fig, facets


def _title(ax, run: str, runs: list[str], text: str | None = None) -> None:
    """A facet's title, in the run's colour (one per run, the same in every figure)."""
    ax.set_title(text or run, fontsize=11, color=run_palette(runs)[run], fontweight="bold")


def _by_run(table: pl.DataFrame, run: str) -> pl.DataFrame:
    return table.filter(pl.col("run") == run)


def cohorts(tables: dict[str, pl.DataFrame], runs: list[str]) -> Figure:
    theme()
    fig, facets = _grid(len(runs), 2, 5.0, (2, 1))
    emergent = tables["cohorts"].filter(pl.col("run").is_in(runs) & (pl.col("status") == "emergent"))
    colours = f.cohort_palette(emergent["cohort_step"].to_list())  # one colour per cohort step, in every facet
    for run, (top, bottom) in zip(runs, facets):
        circuit = _by_run(tables["circuit"], run)
        f.draw_cohorts(top, circuit, _by_run(tables["cohorts"], run), legend=False, colours=colours)
        _title(top, run, runs)
        f.draw_training_curve(bottom, _by_run(tables["train_log"], run), sorted(circuit["step"].unique().to_list()))
    legend: dict[str, object] = {}
    for top, _ in facets:
        for handle, label in zip(*top.get_legend_handles_labels()):
            legend.setdefault(label.replace(", cohort step", " (cohort step"), handle)

    def position(name: str) -> tuple:
        return (
            not name.startswith("maintained"),
            not name.startswith("emergent"),
            int(name.split()[-1]) if "cohort" in name else 0,
            name,
        )

    names = sorted(legend, key=position)
    fig.legend([legend[n] for n in names], [n + (")" if n.startswith("emergent") else "") for n in names],
               loc="lower center", ncol=3, fontsize=8)  # fmt: skip
    fig.tight_layout(rect=(0, 0.04 + 0.02 * math.ceil(len(names) / 3), 1, 1))
    return fig


def frequency(tables: dict[str, pl.DataFrame], runs: list[str]) -> Figure:
    theme()
    some = tables["frequency"]
    n_layers, n_heads = some["layer"].max() + 1, some["head"].max() + 1
    fig, facets = _grid(len(runs), 1, 0.9 + 0.38 * n_layers * min(1.0, 8 / n_heads))
    for run, (ax,) in zip(runs, facets):
        f.draw_frequency(ax, _by_run(tables["frequency"], run), _by_run(tables["cohorts"], run), colorbar=run == runs[-1])
        _title(ax, run, runs)
    fig.tight_layout()
    return fig


def accuracy(tables: dict[str, pl.DataFrame], runs: list[str], order: list[str]) -> Figure:
    theme()
    fig, facets = _grid(len(runs), 1, 3.6)
    for run, (ax,) in zip(runs, facets):
        emergent = _by_run(tables["cohorts"], run).filter(pl.col("status") == "emergent")["cohort_step"].to_list()
        f.draw_accuracy(ax, _by_run(tables["passk"], run), order, emergent)
        _title(ax, run, runs)
    facets[0][0].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig


def passk(tables: dict[str, pl.DataFrame], runs: list[str], order: list[str]) -> Figure:
    """pass@k and the study's success@k against k, base (dashed) vs final (solid) checkpoint."""
    theme()
    palette = difficulty_palette(order)
    fig, facets = _grid(len(runs), 2, 6.0)
    for run, axes in zip(runs, facets):
        table = _by_run(tables["passk"], run)
        first, last = table["step"].min(), table["step"].max()
        for ax, column in zip(axes, ("pass_at_k", "success_at_k")):
            for difficulty, colour in palette.items():
                for step, style in ((first, (0, f.BASE_DASHES)), (last, "-")):  # the passk figure's convention
                    part = table.filter((pl.col("difficulty") == difficulty) & (pl.col("step") == step)).sort("k_samples")
                    label = f"{difficulty}, {'base' if step == first else 'final'}"
                    ax.plot(part["k_samples"], part[column], linestyle=style, marker="o", color=colour, label=label)
            ax.set_ylim(-0.02, 1.02)
            ax.set_xticks(sorted(table["k_samples"].unique().to_list()))
            ax.set_xlabel("k (samples)")
            ax.set_ylabel(f.PASSK_PANELS[column].split("\n")[0])
        _title(axes[0], run, runs)
    facets[0][0].legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    return fig


def failures(tables: dict[str, pl.DataFrame], runs: list[str], order: list[str]) -> Figure:
    """Stacked failure-category shares per checkpoint, one row of panels per difficulty."""
    theme()
    found = [d for d in order if d in set(tables["failure_shares"]["difficulty"])]
    fig, facets = _grid(len(runs), len(found), 2.4 * len(found))
    for run, axes in zip(runs, facets):
        shares = _by_run(tables["failure_shares"], run).filter(pl.col("origin") == "eval")
        steps = sorted(shares["step"].unique().to_list())
        for ax, difficulty in zip(axes, found):
            f._stacked_shares(ax, shares.filter(pl.col("difficulty") == difficulty), "step", steps)
            _title(ax, run, runs, f"{run}, {difficulty}")
            ax.set_ylabel("share of samples")
    handles, names = facets[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=4, fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


CAPTIONS: dict[str, tuple[str, str]] = {
    "cohorts": (
        "Which heads make up each checkpoint's circuit",
        "Each bar is one checkpoint's circuit (the top edges by |EAP-IG score|), every head in it counted once by "
        "its status there: maintained (grey: in the base circuit and still active), emergent (a colour per "
        "cohort: not in the base circuit, active, and in at least the bootstrap threshold of circuits built on "
        "resampled pairs; its cohort is the first checkpoint where that held, and it counts as emergent from "
        "then on), new (hatched yellow: not in the base circuit, active, not or not yet emergent) and lost "
        "(below zero: base heads no longer active). Bars sit at the checkpoints; nothing is interpolated "
        "between them. The bars' height above zero equals the per-checkpoint table's heads in circuit. Below: "
        "the run's reward (GRPO) or training loss per step, checkpoints dotted.",
    ),
    "frequency": (
        "How often each head is in the circuit",
        "Layer x head grid; colour: the share of the run's checkpoints whose circuit holds the head "
        "(activation frequency). A dot marks a head of the base circuit, a black outline an emergent head. "
        "Read it for where emergent heads sit (layers) and whether they stay (bright) or flicker (dark).",
    ),
    "accuracy": (
        "Accuracy by difficulty across checkpoints",
        "Sampled accuracy (every sample of every evaluation problem, think on) per checkpoint and difficulty, "
        "the band a 95 % normal interval from the standard error over problems. Dashed lines: checkpoints at "
        "which a cohort of emergent heads appeared. Read it for whether accuracy changes when heads emerge.",
    ),
    "passk": (
        "pass@k and success@k, base vs final checkpoint",
        "Top: pass@k, the unbiased probability that one of k samples drawn from the n is correct. Bottom: the "
        "study's success@k (Eq. 18), a correct answer among the first k samples in generation order. Dashed: "
        "the base checkpoint; solid: the final one. A gap that closes as k grows means post-training sharpened "
        "what the base could already sample; a gap that stays means it learned something new.",
    ),
    "failures": (
        "How answers fail, across checkpoints",
        "Share of samples per category, one row of panels per difficulty, decided from each completion's text in "
        "this order: correct; loop (the text repeats itself); truncated (token limit); format (no closed trace or "
        "no answer); calculation error (a step does not check out); no trace (a wrong answer with no reasoning "
        "step); wrong plan (every step checks out, the answer is wrong).",
    ),
}


def comparisons(tables: dict[str, pl.DataFrame], runs: list[str], order: list[str]) -> list[Comparison]:
    """Every side-by-side figure of the runs, as SVG with its title and caption."""
    draw: dict[str, Callable[[], Figure]] = {
        "cohorts": lambda: cohorts(tables, runs),
        "frequency": lambda: frequency(tables, runs),
        "accuracy": lambda: accuracy(tables, runs, order),
        "passk": lambda: passk(tables, runs, order),
        "failures": lambda: failures(tables, runs, order),
    }
    return [Comparison(name, *CAPTIONS[name], svg(make())) for name, make in draw.items()]
