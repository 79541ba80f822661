"""Operand vs style pairs: do the two kinds of circuit inputs call the same heads emergent?

The study scores circuits on style-contrast pairs (the prompt followed by the reasoning model's
opening against the starting model's, think on; :mod:`sparks.attribute.style`); sparks' default
scores them on operand pairs (one operand changed, think off or on). With
``attribute.compare_pairs`` a run's every checkpoint is scored on both and aggregated the same
way; this step joins the two cohorts tables head by head. A head is *called* under a kind when
that kind's emergence test calls it at some checkpoint (its ``cohort_step`` is set: emergent or
transient); the two kinds *agree* on a head when both call it or neither does.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import polars as pl

log = logging.getLogger(__name__)
KINDS = ("operand", "style")


def pair_kinds_table(cohorts: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """One row per head in either kind's ``cohorts`` (``cohorts[kind]``, kind in KINDS): its
    status and cohort step under each kind, whether each calls it, and whether they agree."""
    sides = [
        cohorts[kind].select(
            "layer", "head", pl.col("status").alias(f"status_{kind}"), pl.col("cohort_step").alias(f"cohort_step_{kind}")
        )
        for kind in KINDS
    ]
    table = sides[0].join(sides[1], on=["layer", "head"], how="full", coalesce=True)
    called = {kind: pl.col(f"cohort_step_{kind}").is_not_null() for kind in KINDS}
    return table.with_columns(
        called["operand"].alias("called_operand"),
        called["style"].alias("called_style"),
        (called["operand"] == called["style"]).alias("agree"),
    ).sort("layer", "head")


def call_counts(table: pl.DataFrame) -> dict[str, int]:
    """Heads called under both kinds, under operand pairs only and under style pairs only."""
    operand, style = table["called_operand"], table["called_style"]
    return {
        "both": int((operand & style).sum()),
        "operand_only": int((operand & ~style).sum()),
        "style_only": int((style & ~operand).sum()),
    }


def pair_kinds_stage(config: dict[str, Any], files: dict[str, Path], task: str, run: str, out: Path) -> Path:
    """Write the ``pair_kinds`` table of ``run`` to ``out`` from its cohorts tables on operand
    pairs (``files["operand"]``) and on style pairs (``files["style"]``)."""
    from sparks.config import run_provenance
    from sparks.tables import read_table, with_provenance, write_table

    cohorts = {kind: read_table(files[kind], "cohorts") for kind in KINDS}
    for kind, table in cohorts.items():
        if table["run"].unique().to_list() not in ([run], []):
            raise ValueError(f"{kind}-pair cohorts table {files[kind]} is of runs {table['run'].unique().to_list()}, not {run!r}")
    table = pair_kinds_table(cohorts)
    log.info("run %s: emergence calls on operand vs style pairs %s", run, call_counts(table))
    return write_table(with_provenance(table, **run_provenance(config, run, task, "attribute", "aggregate")), "pair_kinds", out)
