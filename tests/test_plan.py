"""sparks plan: jobs per rule as the workflow runs them, and estimates that follow the config."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from conftest import REPO, run_sparks

from sparks.config import check_config, load_config
from sparks.plan import BYTES_FP32, KNOWN_SHAPES, Throughput, model_shape, plan_table, with_limits

PAPER_CONFIGS = sorted(p for p in (REPO / "config").glob("*.yaml") if p.name.startswith(("qwen", "r1-")))


def per_rule(table) -> dict[str, dict]:
    return {row["rule"]: row for row in table.iter_rows(named=True)}


@pytest.mark.parametrize("path", PAPER_CONFIGS, ids=lambda p: p.stem)
def test_paper_configs_plan(path):
    config = load_config(path)
    rows = per_rule(plan_table(config))
    shape = model_shape(config["base"])
    assert shape.params == KNOWN_SHAPES[config["base"]["source"]][4]
    assert rows["prepare_model"]["disk_gb"] >= shape.params * BYTES_FP32 / 1e9
    assert (
        rows["evaluate"]["gpu_hours"] > 0
        and rows["intervene"]["gpu_hours"] > rows["evaluate"]["gpu_hours"] / rows["evaluate"]["jobs"]
    )
    assert all(
        row["gpu"] == (row["gpu_hours"] > 0) for rule, row in rows.items() if rule != "prepare_model"
    )  # GPU jobs cost GPU time
    limits = with_limits(plan_table(config), config)
    assert limits.filter(pl.col("minutes_per_job") > pl.col("runtime_limit")).is_empty()  # every job fits its limit


def test_plan_command_prints_and_writes_the_table(tmp_path):
    path = REPO / "config" / "r1-distill-qwen-1.5b.yaml"
    result = run_sparks("plan", "--configfile", str(path), "--out", str(tmp_path / "plan.parquet"))
    assert result.returncode == 0, result.stderr
    assert "total" in result.stdout and "GPU-hours" in result.stdout and "teacher_traces" in result.stdout
    assert pl.read_parquet(tmp_path / "plan.parquet").equals(plan_table(load_config(path)))


def test_grpo_estimate_follows_its_counts_and_vllm():
    config = load_config(REPO / "config" / "qwen-math-1.5b_gsm8k_grpo.yaml")
    run = config["runs"]["grpo"]
    t = Throughput()
    rows = per_rule(plan_table(config))
    generated = run["max_steps"] * run["batch_size"] * run["grpo"]["max_completion_length"]
    assert rows["train"]["gpu_hours"] > t.generation_hours(generated, 1.54e9)  # generation plus the updates
    checkpoints = 1 + -(-run["max_steps"] // run["save_steps"])
    assert run["save_dtype"] == "bfloat16"  # the peak: older checkpoints in bfloat16, the newest float32 with Adam's state
    assert rows["train"]["disk_gb"] == pytest.approx(((checkpoints - 1) * 2 + 3 * BYTES_FP32) * 1.54e9 / 1e9)
    config["runs"]["grpo"]["trainer"] = {"use_vllm": True}
    faster = per_rule(plan_table(config))["train"]["gpu_hours"]
    assert faster < rows["train"]["gpu_hours"] / 3


def test_embedded_shape_counts_its_parameters(raw_config):
    config = check_config(raw_config)
    shape = model_shape(config["base"])
    assert (shape.n_layers, shape.n_heads, shape.n_kv_heads, shape.hidden) == (4, 8, 2, 64)
    assert shape.params == 4 * (2 * 64 * 64 + 2 * 64 * 16 + 3 * 64 * 256)
    with pytest.raises(ValueError, match="no shape known"):
        model_shape({"source": "someone/unknown-model"})


@pytest.mark.slow
def test_planned_jobs_are_the_jobs_the_embedded_dag_ran(dag_run):
    """The plan's job count per rule equals the Snakemake benchmark files the full-size DAG wrote."""
    config = check_config(__import__("yaml").safe_load((REPO / "workflow_config.yaml").read_text()))
    planned = {rule: row["jobs"] for rule, row in per_rule(plan_table(config)).items()}
    ran = {path.name: len(list(path.rglob("*.tsv"))) for path in Path(dag_run / "timings").iterdir() if path.is_dir()}
    ran.update({path.stem: 1 for path in Path(dag_run / "timings").glob("*.tsv")})  # one-job rules (report)
    assert planned == ran


def test_a_job_over_its_limit_is_named(raw_config):
    from sparks.plan import format_plan

    raw_config["resources"] = {"evaluate": {"mem_mb": 1000, "runtime": 1}}
    raw_config["evaluate"] = {"max_new_tokens": 4096, "n_samples": 64}
    raw_config["base"] = {"source": "Qwen/Qwen2.5-0.5B"}
    raw_config.pop("teacher")
    raw_config["runs"] = {"sft": {"method": "sft"}}
    config = check_config(raw_config)
    assert "warning: evaluate jobs take about" in format_plan(plan_table(config), config)


def test_exact_effects_cost_shows_in_the_attribute_rule():
    """attribute.exact adds 2 + layers x heads forwards per pair (a subsample: fewer) to each attribute job."""
    raw = load_config(REPO / "config" / "r1-distill-qwen-1.5b.yaml")
    assert raw["attribute"]["exact"] == "off"  # auto: off for a hub base
    hours = {}
    for exact, pairs in (("off", None), ("on", None), ("on", 16)):
        config = {**raw, "attribute": {**raw["attribute"], "exact": exact, "exact_pairs": pairs}}
        hours[exact, pairs] = per_rule(plan_table(config))["attribute"]["gpu_hours"]
    assert hours["off", None] < hours["on", 16] < hours["on", None]
