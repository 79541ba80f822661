"""Aggregate stage: a run's circuits across its checkpoints, emergence cohorts, activation
frequency, and how stable the circuits are (bootstrap over pairs, Jaccard between checkpoints).

Reads the attribute stage's tables lazily: only circuit-sized slices of the edge tables
(``rank <= top_n``, pushed down into the Parquet scan) and, per checkpoint, the pair scores
for the bootstrap. Writes ``circuit``, ``cohorts``, ``frequency``, ``stability`` and
``similarity`` (schemas in :mod:`sparks.tables`).
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from sparks.config import ConfigError, add_config_argument, check_task, load_config, run_provenance

log = logging.getLogger(__name__)
TABLES = ("circuit", "cohorts", "frequency", "stability", "similarity")


@dataclass(frozen=True)
class AggregateSettings:
    """The ``aggregate`` section of the config."""

    top_n: int = 40
    faithfulness_target: float | None = None
    bootstrap: int = 100
    stability_threshold: float = 0.8
    kv_edges_activate_group: bool = False

    def __post_init__(self) -> None:
        if self.top_n < 1:
            raise ConfigError(f"aggregate.top_n must be >= 1 (got {self.top_n}); set aggregate.top_n")
        if self.faithfulness_target is not None and not 0 < self.faithfulness_target <= 1:
            raise ConfigError(f"aggregate.faithfulness_target must be in (0, 1] (got {self.faithfulness_target})")
        if self.bootstrap < 0 or not 0 <= self.stability_threshold <= 1:
            raise ConfigError("aggregate.bootstrap must be >= 0 and aggregate.stability_threshold in [0, 1]")


def circuit_size_per_step(faithfulness: pl.LazyFrame, settings: AggregateSettings, steps: list[int]) -> pl.DataFrame:
    """(step, top_n): top_n from the config, or the smallest curve size reaching the faithfulness target."""
    if settings.faithfulness_target is None:
        return pl.DataFrame({"step": steps, "top_n": [settings.top_n] * len(steps)})
    target = settings.faithfulness_target
    return (
        faithfulness.group_by("step")
        .agg(pl.col("n_edges").filter(pl.col("faithfulness") >= target).min().fill_null(pl.col("n_edges").max()).alias("top_n"))
        .sort("step")
        .collect()
    )


def aggregate_run(
    root: Path, run: str, task: str, steps: list[int], settings: AggregateSettings, seed: int = 0
) -> dict[str, pl.DataFrame]:
    """The aggregate tables of one run and task from ``root`` (= results/{exp}), without provenance."""
    import numpy as np

    from sparks.aggregate.bootstrap import head_stability
    from sparks.aggregate.circuits import circuit_edges, circuit_table, cohort_table, frequency_table, jaccard_table

    def files(kind: str) -> list[str]:
        paths = [root / kind / run / str(step) / f"{task}.parquet" for step in steps]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"{missing[0]} does not exist; run the attribute stage first (snakemake {missing[0]})")
        return [str(p) for p in paths]

    heads = pl.read_parquet(files("heads")[0], columns=["layer", "head", "kv_head"])
    sizes = circuit_size_per_step(pl.scan_parquet(files("faithfulness")), settings, steps)
    chosen = circuit_edges(pl.scan_parquet(files("edges")), sizes).select("step", "src", "dst", "dst_input").collect()
    circuit = circuit_table(chosen.lazy(), heads, steps, settings.kv_edges_activate_group)

    names = pl.read_parquet(files("edges")[0], columns=["src", "dst", "dst_input"])  # graph order, as pair_edges
    stability = []
    for step, path in zip(steps, files("pair_edges")):
        n = int(sizes.filter(pl.col("step") == step)["top_n"].item())
        scores = np.stack(pl.read_parquet(path, columns=["scores"])["scores"].to_numpy())  # [n_pairs, n_edges]
        if settings.bootstrap:
            table = head_stability(scores, names, heads, n, settings.bootstrap, seed + step, settings.kv_edges_activate_group)
        else:
            table = heads.select("layer", "head").join(circuit.filter(pl.col("step") == step), on=["layer", "head"])
            table = table.select("layer", "head", pl.col("in_circuit").cast(pl.Float64).alias("p_in_circuit"))
        stability.append(table.with_columns(pl.lit(step, pl.Int64).alias("step")))
    stability = pl.concat(stability).select("step", "layer", "head", "p_in_circuit")
    stable = stability.select("step", "layer", "head", (pl.col("p_in_circuit") >= settings.stability_threshold).alias("stable"))
    log.info("run %s: circuits of %s edges at %d checkpoints", run, sizes["top_n"].unique().to_list(), len(steps))
    return {
        "circuit": circuit,
        "cohorts": cohort_table(circuit, stable),
        "frequency": frequency_table(circuit),
        "stability": stability,
        "similarity": jaccard_table(chosen, circuit),
    }


def aggregate_stage(config: dict[str, Any], manifest: Path, task: str, out: dict[str, Path]) -> None:
    from sparks.tables import with_provenance, write_table
    from sparks.train import read_manifest

    settings = AggregateSettings(**config["aggregate"])
    info = read_manifest(manifest)
    root = Path(manifest).parents[2]  # results/{exp}/runs/{run}/checkpoints.json -> results/{exp}
    tables = aggregate_run(root, info["run"], task, info["steps"], settings, config["seed"])
    provenance = run_provenance(config, info["run"], task, "attribute", "aggregate")
    for name in TABLES:
        write_table(with_provenance(tables[name], **provenance), name, out[name])


def make_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("aggregate", help="circuits, cohorts, frequency and stability of one run")
    add_config_argument(p)
    p.add_argument("--manifest", type=Path, required=True, help="the run's checkpoints.json (its steps are aggregated)")
    p.add_argument("--task", required=True, help="task name under tasks: in the config")
    for name in TABLES:
        p.add_argument(f"--{name}", type=Path, required=True, help=f"output: {name} table (Parquet)")
    p.set_defaults(func=main)
    from sparks.aggregate import think_modes

    think_modes.make_parser(subparsers)


def main(args: argparse.Namespace) -> None:
    config = load_config(args.config)
    check_task(config, args.task)
    aggregate_stage(config, args.manifest, args.task, {name: getattr(args, name) for name in TABLES})
