"""Aggregate stage: a run's circuits across its checkpoints, emergence cohorts, activation
frequency, and how far to trust each call (the paired emergence test with exact per-head
effects, its pair-halves null, EAP-IG against exact effects, Jaccard between checkpoints).

Reads the attribute stage's tables lazily: only circuit-sized slices of the edge tables
(``rank <= top_n``, pushed down into the Parquet scan) and, per checkpoint, the pair scores
and exact effects for the test. Writes the tables of ``TABLES`` (schemas in
:mod:`sparks.tables`). With ``aggregate.prune_isolated`` the circuits, and every resampled
circuit of the test, lose their isolated nodes' edges.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import polars as pl

from sparks.config import Section, fixed_circuit_size, run_provenance
from sparks.layout import ATTRIBUTION, CIRCUITS

log = logging.getLogger(__name__)
TABLES = CIRCUITS
INPUTS = ATTRIBUTION  # the attribute tables it reads, per checkpoint


@dataclass(frozen=True)
class AggregateSettings(Section):
    """The ``aggregate`` section of the config (defaults and limits in the schema)."""

    SCHEMA_PATH = ("properties", "aggregate")

    top_n: int
    faithfulness_target: float | None
    bootstrap: int
    stability_threshold: float
    kv_edges_activate_group: bool
    prune_isolated: bool
    robust_share: float
    compare_faithfulness: float | None
    min_reward_points: int


@dataclass(frozen=True)
class Calls:
    """One circuit-size rule's circuits and the emergence test on them."""

    sizes: pl.DataFrame  # step, top_n
    chosen: pl.DataFrame  # the circuit edges
    circuit: pl.DataFrame
    stability: pl.DataFrame
    null_calls: pl.DataFrame  # no rows for the compared rule (circuit_rules reads calls only)
    cohorts: pl.DataFrame

    def rule_table(self, rule: str) -> pl.DataFrame:
        """Per checkpoint: circuit size, active heads, and the heads called there (circuit_rules)."""
        called = (
            self.stability.filter(pl.col("called"))
            .group_by("step")
            .agg(
                pl.len().cast(pl.Int64).alias("n_called"),
                pl.format("a{}.h{}", "layer", "head").sort().str.join(" ").alias("called"),
            )
        )
        active = self.circuit.group_by("step").agg(pl.col("in_circuit").sum().cast(pl.Int64).alias("n_active"))
        return (
            self.sizes.rename({"top_n": "n_edges"})
            .join(active, on="step")
            .join(called, on="step", how="left")
            .select(
                pl.lit(rule).alias("rule"),
                "step",
                "n_edges",
                "n_active",
                pl.col("n_called").fill_null(0),
                pl.col("called").fill_null(""),
            )
            .sort("step")
        )


def circuit_size_per_step(faithfulness: pl.LazyFrame, settings: AggregateSettings, steps: list[int]) -> pl.DataFrame:
    """(step, top_n): top_n from the config, or the smallest curve size reaching the faithfulness target."""
    fixed = fixed_circuit_size(settings.top_n, settings.faithfulness_target)
    if fixed is not None:
        return pl.DataFrame({"step": steps, "top_n": [fixed] * len(steps)})
    target = settings.faithfulness_target
    return (
        faithfulness.group_by("step")
        .agg(pl.col("n_edges").filter(pl.col("faithfulness") >= target).min().fill_null(pl.col("n_edges").max()).alias("top_n"))
        .sort("step")
        .collect()
    )


def aggregate_run(
    files: dict[str, list[Path]],
    steps: list[int],
    settings: AggregateSettings,
    seed: int = 0,
    train_log: pl.DataFrame | None = None,
    planted: list[str] | None = None,
) -> dict[str, pl.DataFrame]:
    """The aggregate tables of one run and task from its attribute tables (``files[kind]``, one
    file per checkpoint of ``steps``), without provenance. ``emergence`` needs the ``train_log``;
    ``planted`` names the heads a planted run trained (runs.<name>.train_heads)."""
    from sparks.aggregate.agreement import agreement_table
    from sparks.aggregate.bootstrap import Resampled
    from sparks.aggregate.calls import emergence_calls
    from sparks.aggregate.circuits import (
        circuit_edges,
        circuit_table,
        cohort_table,
        frequency_table,
        jaccard_table,
        prune_isolated,
        with_checkpoint_status,
    )
    from sparks.aggregate.emergence import emergence_table
    from sparks.aggregate.importance import importance_table
    from sparks.aggregate.planted import planted_table
    from sparks.tables import check_files, files_by_step

    for kind in INPUTS:  # each file whole and of its table before the raw column reads below
        check_files(files[kind], kind)
    exact = any(pl.scan_parquet(path).select(pl.len()).collect().item() for path in files["head_effects"])
    kinds = [kind for kind in INPUTS if exact or kind != "head_effects"]  # no rows: attribute.exact off
    paths = {kind: files_by_step(files[kind], kind, steps) for kind in kinds}
    ordered = {kind: list(paths[kind].values()) for kind in kinds}
    heads = pl.read_parquet(ordered["heads"][0], columns=["layer", "head", "kv_head"])
    names = pl.read_parquet(ordered["edges"][0], columns=["src", "dst", "dst_input"])  # graph order, as pair_edges
    resampled = Resampled(names, heads, settings.kv_edges_activate_group, settings.prune_isolated)
    curves = pl.scan_parquet(ordered["faithfulness"])

    def calls(sizes: pl.DataFrame, null: bool = True) -> Calls:
        """The circuits of ``sizes`` (step, top_n) and the emergence test on them (``null``: and its
        pair-halves null)."""
        chosen = circuit_edges(pl.scan_parquet(ordered["edges"]), sizes).select("step", "src", "dst", "dst_input", "abs_score")
        chosen = chosen.collect()
        if settings.prune_isolated:
            chosen = prune_isolated(chosen, heads)
        circuit = circuit_table(chosen.lazy(), heads, steps, settings.kv_edges_activate_group)
        point = {
            step: heads.select("layer", "head")
            .join(part, on=["layer", "head"], how="left")["in_circuit"]
            .fill_null(False)
            .to_numpy()
            for (step,), part in circuit.group_by("step")
        }
        stability, null_calls = emergence_calls(
            paths["pair_edges"],
            paths.get("head_effects"),
            resampled,
            dict(sizes.select("step", "top_n").rows()),
            point,
            settings.bootstrap,
            settings.stability_threshold,
            seed,
            halves=null,
        )
        cohorts = cohort_table(circuit, stability.select("step", "layer", "head", pl.col("called").alias("stable")))
        return Calls(sizes, chosen, circuit, stability, null_calls, cohorts)

    main = calls(circuit_size_per_step(curves, settings, steps))
    other_rule = "top_n" if settings.faithfulness_target is not None else "faithfulness"
    other = None
    if other_rule == "top_n" or settings.compare_faithfulness is not None:
        target = None if other_rule == "top_n" else settings.compare_faithfulness
        other = calls(circuit_size_per_step(curves, replace(settings, faithfulness_target=target), steps), null=False)
    circuit, cohorts, stability = main.circuit, main.cohorts, main.stability
    log.info(
        "%d heads called emergent, %d transient; the pair-halves null calls %.2f per checkpoint and direction",
        cohorts.filter(pl.col("status") == "emergent").height,
        cohorts.filter(pl.col("status") == "transient").height,
        main.null_calls["n_called"].mean(),
    )
    log.info("circuits of %s edges at %d checkpoints", main.sizes["top_n"].unique().to_list(), len(steps))
    rules = {("faithfulness" if other_rule == "top_n" else "top_n"): main} | ({other_rule: other} if other else {})
    tables = {
        "circuit": with_checkpoint_status(circuit, cohorts),
        "cohorts": cohorts,
        "frequency": frequency_table(circuit),
        "stability": stability,
        "similarity": jaccard_table(main.chosen, circuit),
        "importance": importance_table(main.chosen, heads, steps),
        "agreement": agreement_table(
            pl.read_parquet(ordered["heads"], columns=["step", "layer", "head", "score"]), stability, circuit
        ),
        "null_calls": main.null_calls,
        "planted": planted_table(planted, cohorts, stability, pl.read_parquet(ordered["heads"][-1])),
        "circuit_rules": pl.concat([result.rule_table(rule) for rule, result in rules.items()]),
    }
    if train_log is not None:
        tables["emergence"] = emergence_table(circuit, cohorts, train_log)
    return tables


def aggregate_stage(
    config: dict[str, Any], manifest: Path, task: str, files: dict[str, list[Path]], train_log: Path, out: dict[str, Path]
) -> None:
    """Write the aggregate tables (``out[name]`` for each of TABLES) of the run in ``manifest``."""
    from sparks.manifest import read_manifest
    from sparks.tables import read_table, with_provenance, write_table

    info = read_manifest(manifest)
    settings = AggregateSettings.from_config(config)
    log_table = read_table(train_log, "train_log")
    planted = config["runs"][info.run]["train_heads"]
    tables = aggregate_run(files, list(info.steps), settings, config["seed"], log_table, planted)
    provenance = run_provenance(config, info.run, task, "attribute", "aggregate")
    for name in TABLES:
        write_table(with_provenance(tables[name], **provenance), name, out[name])
