"""Plot stage: a run's figures (PNG and SVG) from its aggregate tables, train log and
faithfulness curves; ``sparks report`` gathers every run into one self-contained HTML page."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import polars as pl

from sparks.config import add_config_argument, check_task, load_config

log = logging.getLogger(__name__)
FIGURES = ("cohorts", "frequency", "faithfulness", "accuracy", "passk", "scaling", "failures", "failure_scaling", "tokens")
THINK_FIGURE = "think_modes"  # drawn unless attribute.compare_think_at is none


def figure_names(config: dict[str, Any]) -> tuple[str, ...]:
    return FIGURES + ((THINK_FIGURE,) if config["attribute"]["compare_think_at"] != "none" else ())


def figure_stems(figures_dir: Path, task: str, names: tuple[str, ...] = FIGURES + (THINK_FIGURE,)) -> dict[str, Path]:
    return {name: Path(figures_dir) / f"{task}_{name}" for name in names}


def plot_run(root: Path, run: str, task: str, steps: list[int], out_dir: Path, think_modes: bool = True) -> list[Path]:
    """Draw the figures of ``run`` (FIGURES, and THINK_FIGURE if ``think_modes``) from the
    tables under ``root`` (= results/{exp})."""
    from sparks.evaluate import pass_table
    from sparks.plot.figures import (
        accuracy_figure,
        cohort_figure,
        failure_scaling_figure,
        failures_figure,
        faithfulness_figure,
        frequency_figure,
        passk_figure,
        save,
        scaling_figure,
        think_modes_figure,
        tokens_figure,
    )
    from sparks.tables import read_table

    circuits = root / "circuits" / run / task
    circuit = read_table(circuits / "circuit.parquet", "circuit")
    cohorts = read_table(circuits / "cohorts.parquet", "cohorts")
    frequency = read_table(circuits / "frequency.parquet", "frequency")
    train_log = read_table(root / "runs" / run / "train_log.parquet", "train_log")
    curves = read_table([root / "faithfulness" / run / str(s) / f"{task}.parquet" for s in steps], "faithfulness")
    stems = figure_stems(out_dir, task)
    paths = []
    paths += save(
        cohort_figure(circuit, cohorts, train_log, f"{run}: active heads by emergence cohort ({task})"), stems["cohorts"]
    )
    paths += save(frequency_figure(frequency, cohorts, f"{run}: activation frequency per head ({task})"), stems["frequency"])
    paths += save(faithfulness_figure(curves, f"{run}: circuit faithfulness per checkpoint ({task})"), stems["faithfulness"])
    samples = read_table([root / "bench" / run / "eval" / str(s) / f"{task}.parquet" for s in steps], "eval")
    paths += save(accuracy_figure(samples, f"{run}: accuracy by difficulty across checkpoints ({task})"), stems["accuracy"])
    ks = tuple(range(1, int(samples.group_by("step", "sample_id").len()["len"].min()) + 1))
    ends = [
        pass_table(samples.filter(pl.col("step") == step), ks).with_columns(pl.lit(name).alias("checkpoint"))
        for name, step in ((f"base (step {steps[0]})", steps[0]), (f"final (step {steps[-1]})", steps[-1]))
    ]
    paths += save(passk_figure(pl.concat(ends), f"{run}: pass@k and success@k ({task})"), stems["passk"])
    interventions = read_table(root / "bench" / run / "interventions" / f"{task}.parquet", "interventions")
    paths += save(scaling_figure(interventions, f"{run}: emergent heads vs random heads ({task})"), stems["scaling"])
    failures = read_table(root / "bench" / run / "failures.parquet", "failures")
    paths += save(
        failures_figure(failures, f"{run}: failure categories by difficulty across checkpoints ({task})"), stems["failures"]
    )
    figure = failure_scaling_figure(failures, f"{run}: failure categories under head scaling, emergent vs random ({task})")
    paths += save(figure, stems["failure_scaling"])
    paths += save(tokens_figure(failures, f"{run}: tokens spent per correct answer ({task})"), stems["tokens"])
    if think_modes:
        table = read_table(circuits / "think_modes.parquet", "think_modes")
        figure = think_modes_figure(table, f"{run}: heads active on think-on vs think-off prompts ({task})")
        paths += save(figure, stems[THINK_FIGURE])
    log.info("wrote %d figure files to %s", len(paths), out_dir)
    return paths


def make_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("plot", help="figures of one run: cohorts over reward, frequency heatmap, faithfulness")
    add_config_argument(p)
    p.add_argument("--manifest", type=Path, required=True, help="the run's checkpoints.json")
    p.add_argument("--task", required=True, help="task name under tasks: in the config")
    p.add_argument("--out-dir", type=Path, required=True, help="figure folder, e.g. results/embedded/figures/grpo")
    p.set_defaults(func=main)

    r = subparsers.add_parser("report", help="one self-contained HTML page with every run's figures and key tables")
    add_config_argument(r)
    r.add_argument("--results", type=Path, required=True, help="the experiment's results folder, e.g. results/embedded")
    r.add_argument("--out", type=Path, required=True, help="output HTML file")
    r.set_defaults(func=report_main)


def main(args: argparse.Namespace) -> None:
    from sparks.train import read_manifest

    config = load_config(args.config)
    check_task(config, args.task)
    info = read_manifest(args.manifest)
    think_modes = THINK_FIGURE in figure_names(config)
    plot_run(Path(args.manifest).parents[2], info["run"], args.task, info["steps"], args.out_dir, think_modes)


def report_main(args: argparse.Namespace) -> None:
    from sparks.plot.report import write_report

    write_report(load_config(args.config), args.results, args.out)
