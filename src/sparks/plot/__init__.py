"""Plot stage: a run's figures (PNG and SVG) and its section of the report, drawn from the
tables its rule names; ``sparks report`` joins the sections into one self-contained HTML page.
Nothing here computes a result: every number comes from a table written by the stage that owns it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import polars as pl

from sparks.layout import REPLICATES

log = logging.getLogger(__name__)
FIGURES = (
    "cohorts", "frequency", "importance", "faithfulness", "accuracy", "passk", "scaling", "failures", "failure_scaling", "tokens",
)  # fmt: skip
REPLICATE_INPUTS = (*REPLICATES, "replicate_claims")  # the tables sparks plot-replicates reads
REPLICATE_FIGURES = ("replicate_heads", "replicate_accuracy", "replicate_counts")  # sparks plot-replicates draws these
THINK_FIGURE = "think_modes"  # drawn unless attribute.compare_think_at is none
# The tables a run's figures and section read, each named as its schema in sparks.tables
INPUTS = (
    "circuit", "cohorts", "frequency", "similarity", "emergence", "importance", "train_log", "problems", "faithfulness", "passk",
    "eval", "interventions", "failures", "failure_changes", "failure_shares", "think_modes", "think_overlap", "pair_kinds",
)  # fmt: skip
PER_CHECKPOINT = ("faithfulness", "passk", "eval")  # one file per checkpoint
THINK_INPUTS = ("think_modes", "think_overlap")  # only with THINK_FIGURE
PAIR_INPUTS = ("pair_kinds",)  # only for a run in attribute.compare_pairs (its section states the agreement)
# A run's tables on its other evaluation sets (runs.<name>.evaluate_on), by the schema each is:
# every checkpoint's accuracy, the first and last checkpoints' samples, the interventions.
SET_INPUTS = {"set_passk": "passk", "set_eval": "eval", "set_interventions": "interventions"}


def figure_names(config: dict[str, Any]) -> tuple[str, ...]:
    """Every run's figures: FIGURES, the think-mode figure when think modes are compared, and the
    per-benchmark figure when a run is evaluated on more than its own task."""
    from sparks.config import eval_sets
    from sparks.plot.benchmarks import FIGURE

    think = (THINK_FIGURE,) if config["attribute"]["compare_think_at"] != "none" else ()
    return FIGURES + think + ((FIGURE,) if any(len(eval_sets(config, run)) > 1 for run in config["runs"]) else ())


def read_inputs(paths: dict[str, Path | list[Path]]) -> dict[str, pl.DataFrame]:
    """Every table of ``paths`` (names of INPUTS), each checked against its schema."""
    from sparks.tables import read_table

    unknown = set(paths) - set(INPUTS) - set(SET_INPUTS)
    if unknown:
        raise KeyError(f"unknown plot inputs {sorted(unknown)}; known: {', '.join([*INPUTS, *SET_INPUTS])}")
    return {name: read_table(p, SET_INPUTS.get(name, name)) for name, p in paths.items()}


def figure_files(outputs: list[Path], task: str, names: tuple[str, ...]) -> dict[str, list[Path]]:
    """name -> its files among the declared outputs, ``{task}_{name}.png`` and ``.svg``; each
    figure needs both formats and no other file may be named."""
    files = {name: sorted(p for p in outputs if p.name in (f"{task}_{name}.png", f"{task}_{name}.svg")) for name in names}
    extra = [str(p) for p in outputs if not any(p in found for found in files.values())]
    broken = [name for name, found in files.items() if sorted(p.suffix for p in found) != [".png", ".svg"]]
    if extra or broken:
        raise ValueError(
            f"plot writes {task}_<name>.png and .svg for each of {', '.join(names)}; missing: {broken}, not a figure: {extra}"
        )
    return files


def all_sets(tables: dict[str, pl.DataFrame], name: str) -> pl.DataFrame:
    """A run's ``name`` table (passk, eval or interventions) on its own task and its other sets."""
    other = tables.get(next(k for k, v in SET_INPUTS.items() if v == name))
    return tables[name] if other is None else pl.concat([tables[name], other])


def intervened(interventions: pl.DataFrame) -> str:
    """The evaluate.heads value the interventions table names (emergent unless it says otherwise)."""
    from sparks.registry import CONTROLS

    named = set(interventions["heads_from"].unique()) - {"none", *CONTROLS}
    return next(iter(named), "emergent")


def benchmarks_of(tables: dict[str, pl.DataFrame], run: str, cohort_steps: list[int]):
    from sparks.plot.benchmarks import benchmarks_figure, set_accuracy, set_scaling

    interventions = all_sets(tables, "interventions")
    heads = intervened(interventions)
    return benchmarks_figure(
        set_accuracy(all_sets(tables, "passk")), set_scaling(interventions, heads), cohort_steps,
        f"{run}: accuracy per evaluation set, and the starting model with its {heads} heads scaled", heads,
    )  # fmt: skip


def plot_run(
    tables: dict[str, pl.DataFrame],
    run: str,
    task: str,
    outputs: list[Path],
    order: list[str],
    circuit_edges: int | None = None,
) -> list[Path]:
    """Draw the run's figures to ``outputs`` (FIGURES, plus THINK_FIGURE when the think tables are
    given); ``order``: the task's difficulties, easiest first; ``circuit_edges``: the fixed circuit
    size (aggregate.top_n), marked on the faithfulness curve."""
    from sparks.plot import figures as f
    from sparks.plot.benchmarks import FIGURE as BENCHMARKS
    from sparks.plot.canvas import save_files

    think = all(name in tables for name in THINK_INPUTS)
    benchmarks = any(Path(p).name == f"{task}_{BENCHMARKS}.png" for p in outputs)  # asked for: a run of the config has sets
    files = figure_files(
        [Path(p) for p in outputs], task, FIGURES + ((THINK_FIGURE,) if think else ()) + ((BENCHMARKS,) if benchmarks else ())
    )
    passk, steps = tables["passk"], sorted(tables["passk"]["step"].unique())
    ends = passk.filter(pl.col("step").is_in([steps[0], steps[-1]])).with_columns(
        pl.format(
            "{} (step {})", pl.when(pl.col("step") == steps[0]).then(pl.lit("base")).otherwise(pl.lit("final")), "step"
        ).alias("checkpoint")
    )
    shares = tables["failure_shares"]
    cohort_steps = tables["cohorts"].filter(pl.col("status") == "emergent")["cohort_step"].unique().to_list()
    drawn = {
        "cohorts": f.cohort_figure(tables["circuit"], tables["cohorts"], tables["train_log"], f"{run}: active heads by emergence cohort ({task})"),
        "frequency": f.frequency_figure(tables["frequency"], tables["cohorts"], f"{run}: activation frequency per head ({task})"),
        "importance": f.importance_figure(tables["importance"], tables["cohorts"], f"{run}: head effect, post vs pre, mean over checkpoints ({task})"),
        "faithfulness": f.faithfulness_figure(tables["faithfulness"], f"{run}: circuit faithfulness per checkpoint ({task})", circuit_edges),
        "accuracy": f.accuracy_figure(passk, f"{run}: accuracy by difficulty across checkpoints ({task})", order, cohort_steps),
        "passk": f.passk_figure(ends, f"{run}: pass@k, success@k and all-correct@k ({task})", order),
        "scaling": f.scaling_figure(tables["interventions"], f"{run}: emergent heads vs control heads ({task})", order),
        "failures": f.failures_figure(shares, f"{run}: failure categories by difficulty across checkpoints ({task})", order),
        "failure_scaling": f.failure_scaling_figure(shares, f"{run}: failure categories under head scaling, emergent vs controls ({task})", order),
        "tokens": f.tokens_figure(shares, f"{run}: tokens spent per correct answer ({task})", order),
    }  # fmt: skip
    if think:
        title = f"{run}: heads active on think-on vs think-off prompts ({task})"
        drawn[THINK_FIGURE] = f.think_modes_figure(tables["think_modes"], tables["think_overlap"], title)
    if benchmarks:
        drawn[BENCHMARKS] = benchmarks_of(tables, run, cohort_steps)
    paths = [path for name, figure in drawn.items() for path in save_files(figure, files[name])]
    log.info("wrote %d figure files", len(paths))
    return paths
