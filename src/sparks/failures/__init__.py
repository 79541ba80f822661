"""Failures stage: every eval and intervention sample of a run classified from its text
(:mod:`sparks.failures.classify`), each condition's category shares, and the base-to-final and
emergent-versus-control changes with bootstrap intervals (:mod:`sparks.failures.changes`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import polars as pl

from sparks.config import run_provenance

log = logging.getLogger(__name__)


def failures_stage(
    config: dict[str, Any],
    manifest: Path,
    task: str,
    problems_path: Path,
    eval_paths: list[Path],
    samples_path: Path,
    out: dict[str, Path],
) -> None:
    """Write ``out["failures"]``, ``out["failure_changes"]`` and ``out["failure_shares"]`` of the run
    in ``manifest`` from its eval tables (one per checkpoint) and its intervention samples."""
    from sparks.data.tasks import eval_problems
    from sparks.failures.changes import SAMPLE_KEYS, change_table, failure_table, share_table
    from sparks.failures.classify import FailureSettings
    from sparks.manifest import read_manifest
    from sparks.tables import files_by_step, read_table, with_provenance, write_table

    info = read_manifest(manifest)
    evals = read_table(list(files_by_step(eval_paths, "eval", info.steps).values()), "eval")
    evals = evals.with_columns(
        pl.lit("eval").alias("origin"), pl.lit(None, pl.String).alias("kind"), pl.lit(None, pl.String).alias("heads_from"),
        pl.lit(None, pl.Int64).alias("seed"), pl.lit(None, pl.Float64).alias("alpha"),
    )  # fmt: skip
    interventions = read_table(samples_path, "intervention_samples").with_columns(pl.lit("intervention").alias("origin"))
    columns = [*SAMPLE_KEYS, "difficulty", "sample_id", "k", "correct", "n_tokens", "completion"]
    samples = pl.concat([evals.select(columns), interventions.select(columns)])
    settings = FailureSettings.from_config(config)
    source = config["tasks"][task]["source"]
    max_new = config["evaluate"]["max_new_tokens"]
    table = failure_table(samples, eval_problems(problems_path), max_new, source == "synthetic", settings, source)
    tables = {
        "failures": table,
        "failure_changes": change_table(table, list(info.steps), seed=config["seed"]),
        "failure_shares": share_table(table),
    }
    log.info("category shares:\n%s", tables["failure_shares"].filter(pl.col("origin") == "eval"))
    provenance = run_provenance(config, info.run, task, "evaluate", "failures")
    for name, df in tables.items():
        write_table(with_provenance(df, **provenance), name, out[name])
