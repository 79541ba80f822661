"""A run's head policy (``runs.<name>.heads``) resolved from other runs' tables into heads.

A policy names a head set for each of ``freeze``, ``train_only`` and ``anchor``: a literal list
(``[a1.h3]``) or a reference the DAG resolves before the run trains, each read from one table:

- ``{emergent_of: run}``: that run's emergent heads (``cohorts``, status emergent: in its final
  circuit and called by the emergence test);
- ``{robust_of: run}``: a replicated run's robust set (``replicate_heads``, robust);
- ``{base_circuit_of: run}``: the heads in that run's circuit at its first checkpoint, the starting model;
- ``{calculation_heads: k}``: the k heads whose ablation in the run's starting model raises the
  calculation-error share the most (``calculation_heads``, overall rows; only heads whose
  ablation raises it at all: fewer than k when fewer do).

A replicate reads the replicate of the referenced run with the same seed (``sft-s1`` for a
policy replicate ``*-s1``), so each replicate pairs with one plain replicate; a run whose seeds
do not match must use ``robust_of``. A resolved set may be empty (a plain run that called no
head): the policy then freezes nothing, anchors nothing, or (train_only) trains nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import polars as pl

from sparks import layout
from sparks.config import base_role, describe, head_sets, paired_run

log = logging.getLogger(__name__)
SOURCES = {  # reference -> the table its heads are read from
    "emergent_of": "cohorts",
    "robust_of": "replicate_heads",
    "base_circuit_of": "circuit",
    "calculation_heads": "calculation_heads",
}


def head_set_table(config: dict[str, Any], run: str, spec: list[str] | dict[str, Any]) -> str | None:
    """The file a head set of policy run ``run`` is read from (None for a literal list)."""
    if isinstance(spec, list):
        return None
    ((key, ref),) = spec.items()
    exp = config["experiment"]
    task = config["runs"][run]["task"]
    if key == "calculation_heads":
        return layout.calculation_heads(base_role(config, run), task, exp)
    if key == "robust_of":
        return layout.replicates("replicate_heads", ref, config["runs"][config["replicates"][ref][0]]["task"], exp)
    source = paired_run(config, run, ref)
    return layout.circuits(SOURCES[key], source, config["runs"][source]["task"], exp)


def heads_from(spec: list[str] | dict[str, Any], table: pl.DataFrame | None) -> list[str]:
    """The heads a head set names, from its table (see the module docstring), in layer and head order."""
    if isinstance(spec, list):
        return list(spec)
    ((key, value),) = spec.items()
    if key == "emergent_of":
        chosen = table.filter(pl.col("status") == "emergent")
    elif key == "robust_of":
        chosen = table.filter(pl.col("robust").fill_null(False))
    elif key == "base_circuit_of":
        chosen = table.filter((pl.col("step") == pl.col("step").min()) & pl.col("in_circuit"))
    else:  # calculation_heads: the top ``value`` by rise of the calculation-error share, rising ones only
        chosen = table.filter((pl.col("difficulty") == "all") & (pl.col("calc_rise") > 0)).sort("rank").head(value)
    pairs = sorted(set(zip(chosen["layer"].to_list(), chosen["head"].to_list(), strict=True)))
    return [f"a{layer}.h{head}" for layer, head in pairs]


def policy_table(config: dict[str, Any], run: str, tables: dict[str, pl.DataFrame | None]) -> pl.DataFrame:
    """One row per (policy, head) of run ``run``'s head policy, from the table each set is read from
    (``tables[policy]``; None for a literal list). Without provenance."""
    from sparks.types import parse_heads

    anchor = (config["runs"][run]["heads"] or {}).get("anchor")
    rows = []
    for policy, spec in head_sets(config["runs"][run]).items():
        named = heads_from(spec, tables.get(policy))
        if not named:
            log.warning("run %s: heads.%s (%s) names no head", run, policy, describe(spec))
        for head in parse_heads(named, f"runs.{run}.heads.{policy}") if named else ():
            rows.append(
                {
                    "policy": policy,
                    "layer": head.layer,
                    "head": head.head,
                    "head_set": describe(spec),
                    "weight": anchor["weight"] if policy == "anchor" else None,
                }
            )
    schema = {"policy": pl.String, "layer": pl.Int64, "head": pl.Int64, "head_set": pl.String, "weight": pl.Float64}
    return pl.DataFrame(rows, schema=schema)


def head_policy_stage(config: dict[str, Any], run: str, files: dict[str, Path], out: Path) -> Path:
    """Resolve run ``run``'s head policy from the tables in ``files`` (policy -> the file its
    set is read from, :func:`head_set_table`) and write the head_policy table to ``out``."""
    from sparks.config import config_hash
    from sparks.tables import read_table, with_provenance, write_table

    sets = head_sets(config["runs"][run])
    missing = [p for p, spec in sets.items() if not isinstance(spec, list) and p not in files]
    if missing:
        raise ValueError(f"runs.{run}.heads.{missing[0]} names {describe(sets[missing[0]])}: pass its table")
    tables = {p: read_table(files[p], SOURCES[next(iter(sets[p]))]) for p in files}
    table = policy_table(config, run, tables)
    log.info("run %s: head policy\n%s", run, table)
    provenance = {"experiment": config["experiment"], "run": run, "step": None, "task": config["runs"][run]["task"]}
    return write_table(
        with_provenance(table, **provenance, model_hash=None, config_hash=config_hash(config["runs"][run]["heads"])),
        "head_policy",
        out,
    )


def read_policy(config: dict[str, Any], run: str, path: Path):
    """The :class:`sparks.train.heads.HeadPolicy` of a run from its head_policy table."""
    from sparks.tables import read_table
    from sparks.train.heads import HeadPolicy

    table = read_table(path, "head_policy")
    if table["run"].unique().to_list() not in ([run], []):
        raise ValueError(f"head policy table {path} is of run {table['run'].unique().to_list()}, not {run!r}")
    sets = head_sets(config["runs"][run])
    named = {
        p: tuple(f"a{r['layer']}.h{r['head']}" for r in table.filter(pl.col("policy") == p).iter_rows(named=True)) for p in sets
    }
    anchor = config["runs"][run]["heads"].get("anchor")
    return HeadPolicy(
        freeze=named.get("freeze"),
        train_only=named.get("train_only"),
        anchor=named.get("anchor"),
        anchor_weight=anchor["weight"] if anchor else 0.0,
    )
