"""attribute.compare_pairs: a run's checkpoints scored on style pairs too, aggregated the same way,
and its emergence calls on the two kinds of circuit inputs compared head by head (pair_kinds)."""

from __future__ import annotations

from collections import Counter

import polars as pl
import pytest

from sparks import layout, workflow
from sparks.aggregate.pair_kinds import call_counts, pair_kinds_stage, pair_kinds_table
from sparks.config import ConfigError, check_config
from sparks.tables import read_table, with_provenance, write_table

STEPS = {"sft": [0, 30, 60], "grpo": [0, 40], "distill": [0, 30]}


def cohorts(rows: list[tuple[int, int, int | None, str]], run: str = "sft") -> pl.DataFrame:
    """A cohorts table of (layer, head, cohort_step, status) rows."""
    table = pl.DataFrame(
        [
            {"layer": layer, "head": head, "cohort_step": step, "first_step": 0, "last_step": 60, "active_steps": 2, "status": s}
            for layer, head, step, s in rows
        ],
        schema={"layer": pl.Int64, "head": pl.Int64, "cohort_step": pl.Int64, "first_step": pl.Int64,
                "last_step": pl.Int64, "active_steps": pl.Int64, "status": pl.String},
    )  # fmt: skip
    return with_provenance(table, experiment="e", run=run, step=None, task="arith", model_hash=None, config_hash="c")


def test_calls_are_compared_head_by_head():
    operand = cohorts([(0, 1, 30, "emergent"), (1, 2, None, "maintained"), (2, 0, 60, "transient")])
    style = cohorts([(0, 1, 60, "emergent"), (1, 2, 30, "emergent"), (3, 3, None, "lost")])
    table = pair_kinds_table({"operand": operand, "style": style})
    rows = {(r["layer"], r["head"]): r for r in table.iter_rows(named=True)}
    assert sorted(rows) == [(0, 1), (1, 2), (2, 0), (3, 3)]  # every head of either table, once
    assert rows[(0, 1)]["called_operand"] and rows[(0, 1)]["called_style"] and rows[(0, 1)]["agree"]
    assert (rows[(1, 2)]["status_operand"], rows[(1, 2)]["status_style"]) == ("maintained", "emergent")
    assert not rows[(1, 2)]["agree"] and not rows[(2, 0)]["agree"]
    assert rows[(2, 0)]["status_style"] is None and rows[(3, 3)]["status_operand"] is None
    assert rows[(3, 3)]["agree"]  # called by neither (lost under style pairs, absent under operand)
    assert call_counts(table) == {"both": 1, "operand_only": 1, "style_only": 1}


def test_the_stage_writes_the_table_and_refuses_another_runs_cohorts(tmp_path, raw_config):
    config = check_config(raw_config)
    paths = {}
    for kind, run in (("operand", "sft"), ("style", "sft"), ("other", "grpo")):
        paths[kind] = write_table(cohorts([(0, 1, 30, "emergent")], run), "cohorts", tmp_path / f"{kind}.parquet")
    out = pair_kinds_stage(config, {"operand": paths["operand"], "style": paths["style"]}, "arith", "sft", tmp_path / "k.parquet")
    table = read_table(out, "pair_kinds")
    assert table["run"].to_list() == ["sft"] and table["agree"].to_list() == [True]
    with pytest.raises(ValueError, match="not 'sft'"):
        pair_kinds_stage(config, {"operand": paths["operand"], "style": paths["other"]}, "arith", "sft", tmp_path / "x.parquet")


def test_compared_runs_plan_style_jobs_at_every_checkpoint(raw_config):
    raw_config["attribute"]["compare_pairs"] = ["sft"]
    graph = workflow.Workflow(check_config(raw_config), "c.yaml", lambda run: STEPS[run])
    jobs = Counter(graph.jobs())
    assert jobs[workflow.Job("attribute_style", "sft")] == 3 and jobs[workflow.Job("style_pairs", "sft")] == 1
    assert jobs[workflow.Job("aggregate_style", "sft")] == jobs[workflow.Job("pair_kinds", "sft")] == 1
    assert not any(job.of == "grpo" and job.rule in ("attribute_style", "style_pairs", "pair_kinds") for job in jobs)
    wildcards = type("W", (), {"run": "sft", "task": "arith"})()
    style = graph.style_attribution_tables(wildcards)
    assert style["heads"] == [layout.style_attribution("heads", "sft", s, "arith", "embedded") for s in STEPS["sft"]]
    assert graph.plot_inputs(wildcards)["pair_kinds"] == layout.circuits("pair_kinds", "sft", "arith", "embedded")
    wildcards.run = "grpo"
    assert "pair_kinds" not in graph.plot_inputs(wildcards)


def test_a_replicated_run_compares_every_replicate(raw_config):
    raw_config["attribute"]["compare_pairs"] = ["sft"]
    raw_config["runs"]["sft"]["seeds"] = [0, 1]
    config = check_config(raw_config)
    jobs = Counter(workflow.Workflow(config, "c.yaml", lambda run: STEPS[run.split("-")[0]]).jobs())
    assert [jobs[workflow.Job("pair_kinds", layout.replicate("sft", s))] for s in (0, 1)] == [1, 1]


@pytest.mark.parametrize(
    ("compare", "pairs", "message"),
    [(["nope"], "operand", "names run 'nope'"), (["sft"], "style", "already style pairs")],
)
def test_a_bad_comparison_is_refused(raw_config, compare, pairs, message):
    raw_config["attribute"].update(compare_pairs=compare, pairs=pairs, think=True, compare_think_at="none")
    with pytest.raises(ConfigError, match=message):
        check_config(raw_config)


def test_the_report_states_the_agreement(raw_config):
    from sparks.plot.report import behaviour_note

    table = pair_kinds_table(
        {"operand": cohorts([(0, 1, 30, "emergent"), (2, 5, 30, "transient")]), "style": cohorts([(0, 1, 30, "emergent")])}
    )
    note = behaviour_note(check_config(raw_config), "sft", table)
    assert "1 called on both kinds (a0.h1), 1 called on operand pairs only (a2.h5), 0 called on style pairs only (none)" in note
