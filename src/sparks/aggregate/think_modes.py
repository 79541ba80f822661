"""Think on vs think off: the circuit of the same checkpoint on think-on and think-off prompts.

Both modes' pairs come from the same problems (prepare-data makes them per mode). In think-on
pairs the answer follows the model's trace, in think-off pairs it follows the question at once,
so the two circuits answer one question by two routes. Each mode's circuit is its top-N edges
(``aggregate.top_n``) and its active heads are found exactly as for the emergence cohorts.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import polars as pl

from sparks.aggregate.circuits import circuit_edges, circuit_table
from sparks.registry import THINK_MODES as MODES

log = logging.getLogger(__name__)


def think_mode_table(
    edges: dict[bool, pl.DataFrame], heads: dict[bool, pl.DataFrame], top_n: int, kv_edges_activate_group: bool = False
) -> pl.DataFrame:
    """One row per (step, head): active in each mode, the head's score and rank in each, and its mode.

    ``edges[think]`` and ``heads[think]`` are the attribute tables of the compared checkpoints
    (with a ``step`` column) for think on (True) and off (False).
    """
    steps = sorted(set(edges[True]["step"]) & set(edges[False]["step"]))
    if not steps:
        raise ValueError("no checkpoint was scored in both think modes")
    per_mode = []
    for think, name in ((True, "on"), (False, "off")):
        chosen = circuit_edges(edges[think].lazy(), top_n)
        active = circuit_table(chosen, heads[think], steps, kv_edges_activate_group)
        scores = heads[think].select("step", "layer", "head", "score", "rank")
        per_mode.append(
            active.join(scores, on=["step", "layer", "head"], how="left").select(
                "step",
                "node",
                "layer",
                "head",
                pl.col("in_circuit").alias(f"active_think_{name}"),
                pl.col("n_edges").alias(f"n_edges_think_{name}"),
                pl.col("score").alias(f"score_think_{name}"),
                pl.col("rank").alias(f"rank_think_{name}"),
            )
        )
    both = per_mode[0].join(per_mode[1], on=["step", "node", "layer", "head"])
    on, off = pl.col("active_think_on"), pl.col("active_think_off")
    mode = (
        pl.when(on & off)
        .then(pl.lit("both"))
        .when(on)
        .then(pl.lit("think_on_only"))
        .when(off)
        .then(pl.lit("think_off_only"))
        .otherwise(pl.lit("neither"))
    )
    return both.with_columns(mode.alias("mode")).sort("step", "layer", "head")


def overlap_summary(table: pl.DataFrame) -> pl.DataFrame:
    """Per step: heads active in both modes, in one only, and the Jaccard index of the two sets."""
    counts = table.group_by("step").agg(*[(pl.col("mode") == m).sum().alias(m) for m in MODES[:3]])
    union = pl.col("both") + pl.col("think_on_only") + pl.col("think_off_only")
    return counts.with_columns(pl.when(union > 0).then(pl.col("both") / union).otherwise(None).alias("jaccard")).sort("step")


def compare_steps(steps: list[int], at: str) -> list[int]:
    """The checkpoints compared across think modes (``attribute.compare_think_at``)."""
    return {"none": [], "ends": sorted({steps[0], steps[-1]}), "all": list(steps)}[at]


def think_modes_stage(
    config: dict[str, Any], files: dict[tuple[str, bool], list[Path]], task: str, run: str, out: Path, overlap_out: Path
) -> Path:
    """Write the ``think_modes`` table of one run to ``out`` and its per-step summary
    (``think_overlap``) to ``overlap_out``. ``files[(kind, think)]`` are the heads and edges
    tables of the compared checkpoints scored with think on (True) and off (False)."""
    from sparks.aggregate import AggregateSettings
    from sparks.config import run_provenance
    from sparks.tables import read_table, with_provenance, write_table

    settings = AggregateSettings.from_config(config)
    edges = {think: read_table(files[("edges", think)], "edges") for think in (True, False)}
    heads = {think: read_table(files[("heads", think)], "heads") for think in (True, False)}
    for think, table in heads.items():
        if table["run"].unique().to_list() != [run]:
            raise ValueError(
                f"think-{'on' if think else 'off'} heads tables are of runs {table['run'].unique().to_list()}, not {run!r}"
            )
    table = think_mode_table(edges, heads, settings.top_n, settings.kv_edges_activate_group)
    hashes = heads[True].group_by("step").agg(pl.col("model_hash").first())  # per-row step and model
    provenance = run_provenance(config, run, task, "attribute", "aggregate")
    table = with_provenance(table.join(hashes, on="step"), **provenance)
    overlap = overlap_summary(table)
    log.info("run %s: think on/off circuits at steps %s\n%s", run, sorted(table["step"].unique()), overlap)
    write_table(with_provenance(overlap, **provenance), "think_overlap", overlap_out)
    return write_table(table, "think_modes", out)
