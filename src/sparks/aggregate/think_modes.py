"""Think on vs think off: the circuit of the same checkpoint on think-on and think-off prompts.

Both modes' pairs come from the same problems (prepare-data makes them per mode). In think-on
pairs the answer follows the model's trace, in think-off pairs it follows the question at once,
so the two circuits answer one question by two routes. Each mode's circuit is its top-N edges
(``aggregate.top_n``) and its active heads are found exactly as for the emergence cohorts.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import polars as pl

from sparks.aggregate.circuits import circuit_edges, circuit_table
from sparks.config import add_config_argument

log = logging.getLogger(__name__)
MODES = ("both", "think_on_only", "think_off_only", "neither")


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


def mode_table_path(root: Path, kind: str, run: str, step: int, task: str, think: bool, main_think: bool) -> Path:
    """Where the attribute stage's ``kind`` table (heads or edges) of one checkpoint and think mode is.

    The config's own mode (``attribute.think``) is the main attribute table; the other mode has
    its own tree, ``think/{on|off}/{kind}/...``, with the same layout.
    """
    if think == main_think:
        return root / kind / run / str(step) / f"{task}.parquet"
    return root / "think" / ("on" if think else "off") / kind / run / str(step) / f"{task}.parquet"


def think_modes_stage(config: dict[str, Any], manifest: Path, task: str, out: Path) -> Path:
    """Write the ``think_modes`` table of one run (its compared checkpoints) to ``out``."""
    from sparks.aggregate import AggregateSettings
    from sparks.config import run_provenance
    from sparks.tables import read_table, with_provenance, write_table
    from sparks.train import read_manifest

    settings = AggregateSettings(**config["aggregate"])
    info = read_manifest(manifest)
    steps = compare_steps(info["steps"], config["attribute"]["compare_think_at"])
    if not steps:
        raise ValueError("attribute.compare_think_at is none: no checkpoint is scored in both think modes")
    root = Path(manifest).parents[2]  # results/{exp}/runs/{run}/checkpoints.json -> results/{exp}
    main_think = config["attribute"]["think"]
    edges, heads = {}, {}
    for think in (True, False):
        for kind, into in (("edges", edges), ("heads", heads)):
            paths = [mode_table_path(root, kind, info["run"], s, task, think, main_think) for s in steps]
            into[think] = read_table(paths, kind)
    table = think_mode_table(edges, heads, settings.top_n, settings.kv_edges_activate_group)
    hashes = heads[True].group_by("step").agg(pl.col("model_hash").first())  # per-row step and model
    provenance = run_provenance(config, info["run"], task, "attribute", "aggregate")
    table = with_provenance(table.join(hashes, on="step"), **provenance)
    log.info("run %s: think on/off circuits at steps %s\n%s", info["run"], steps, overlap_summary(table))
    return write_table(table, "think_modes", out)


def make_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("think-modes", help="circuits of the same checkpoints on think-on vs think-off prompts")
    add_config_argument(p)
    p.add_argument("--manifest", type=Path, required=True, help="the run's checkpoints.json")
    p.add_argument("--task", required=True, help="task name under tasks: in the config")
    p.add_argument("--out", type=Path, required=True, help="output: think_modes table (Parquet)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> None:
    from sparks.config import check_task, load_config

    config = load_config(args.config)
    check_task(config, args.task)
    think_modes_stage(config, args.manifest, args.task, args.out)
