"""sparks plan: jobs per rule as the workflow runs them, and estimates that follow the config."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from conftest import REPO, run_sparks, snakemake

from sparks.config import ConfigError, check_config, load_config
from sparks.memory import KNOWN_SHAPES, model_shape
from sparks.plan import BYTES_FP32, Throughput, check_fits, plan_jobs, plan_table

PAPER_CONFIGS = sorted(p for p in (REPO / "config").glob("*.yaml") if p.name.startswith(("qwen", "r1-")))


def per_rule(table) -> dict[str, dict]:
    return {row["rule"]: row for row in table.iter_rows(named=True)}


@pytest.mark.parametrize("path", PAPER_CONFIGS, ids=lambda p: p.stem)
def test_paper_configs_plan(path):
    config = load_config(path)
    rows = per_rule(plan_table(config))
    shape = model_shape(config["base"])
    assert shape == KNOWN_SHAPES[config["base"]["source"]]
    assert rows["prepare_model"]["disk_gb"] >= shape.params * BYTES_FP32 / 1e9
    assert (
        rows["evaluate"]["gpu_hours"] > 0
        and rows["intervene"]["gpu_hours"] > rows["evaluate"]["gpu_hours"] / rows["evaluate"]["jobs"]
    )
    assert all(
        row["gpu"] == (row["gpu_hours"] > 0) for rule, row in rows.items() if rule != "prepare_model"
    )  # GPU jobs cost GPU time
    jobs = plan_jobs(config)
    assert jobs.filter(pl.col("minutes") > pl.col("runtime_limit")).is_empty()  # every job fits its time limit
    gpu_jobs = jobs.filter(pl.col("gpu") & (pl.col("rule") != "prepare_model"))
    assert gpu_jobs["peak_gb"].is_not_null().all() and (gpu_jobs["peak_gb"] <= gpu_jobs["gpu_mem_gb"]).all()  # and its card
    check_fits(config)  # as shipped, the workflow accepts it


def test_plan_command_prints_and_writes_the_table(tmp_path):
    path = REPO / "config" / "r1-distill-qwen-1.5b.yaml"
    result = run_sparks("plan", "--configfile", str(path), "--out", str(tmp_path / "plan.parquet"))
    assert result.returncode == 0, result.stderr
    assert "total" in result.stdout and "GPU-hours" in result.stdout and "teacher_traces" in result.stdout
    assert "peak GB" in result.stdout and "warning" not in result.stdout
    assert pl.read_parquet(tmp_path / "plan.parquet").equals(plan_jobs(load_config(path)))


def test_grpo_estimate_follows_its_counts_and_vllm():
    config = load_config(REPO / "config" / "qwen-math-1.5b_gsm8k_grpo.yaml")
    run = config["runs"]["grpo"]
    t = Throughput()
    rows = per_rule(plan_table(config))
    generated = run["max_steps"] * run["batch_size"] * run["grpo"]["max_completion_length"]
    assert rows["train"]["gpu_hours"] > t.generation_hours(generated, 1.54e9)  # generation plus the updates
    checkpoints = 1 + -(-run["max_steps"] // run["save_steps"])
    assert run["save_dtype"] == "bfloat16"  # the peak: older checkpoints in bfloat16, the newest float32 with Adam's state
    params = model_shape(config["base"]).params
    assert rows["train"]["disk_gb"] == pytest.approx(((checkpoints - 1) * 2 + 3 * BYTES_FP32) * params / 1e9)
    config["runs"]["grpo"]["trainer"] = {"use_vllm": True}
    faster = per_rule(plan_table(config))["train"]["gpu_hours"]
    assert faster < rows["train"]["gpu_hours"] / 3


def test_embedded_shape_counts_its_parameters(raw_config):
    config = check_config(raw_config)
    shape = model_shape(config["base"])
    assert (shape.n_layers, shape.n_heads, shape.n_kv_heads, shape.hidden) == (4, 8, 2, 64)
    assert shape.params == 4 * (2 * 64 * 64 + 2 * 64 * 16 + 3 * 64 * 256) + shape.vocab * 64  # tied embeddings
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
    assert "warning: evaluate job of sft takes about" in format_plan(plan_jobs(config), config)


def test_exact_effects_cost_shows_in_the_attribute_rule():
    """attribute.exact adds 2 + layers x heads forwards per pair (a subsample: fewer) to each attribute job."""
    raw = load_config(REPO / "config" / "r1-distill-qwen-1.5b.yaml")
    assert raw["attribute"]["exact"] == "off"  # auto: off for a hub base
    hours = {}
    for exact, pairs in (("off", None), ("on", None), ("on", 16)):
        config = {**raw, "attribute": {**raw["attribute"], "exact": exact, "exact_pairs": pairs}}
        hours[exact, pairs] = per_rule(plan_table(config))["attribute"]["gpu_hours"]
    assert hours["off", None] < hours["on", 16] < hours["on", None]


def test_a_long_job_is_not_hidden_by_its_rules_mean():
    """Issue 30: r1-distill-qwen-1.5b's GRPO job needs about 3,760 min on one GPU against a 2,880-min
    limit; the rule's mean over it and the short distill job hid it."""
    config = load_config(REPO / "config" / "r1-distill-qwen-1.5b.yaml")
    config["resources"]["train"] = {**config["resources"]["train"], "gpus": 1}
    jobs = plan_jobs(config).filter(pl.col("rule") == "train")
    assert jobs["minutes"].mean() < 2880 < jobs["minutes"].max()
    with pytest.raises(ConfigError, match=r"train job of grpo takes about 37\d\d min .*resources.train.runtime"):
        check_fits(config)


def test_a_job_over_its_card_is_refused_with_the_key_to_change():
    """Issue 30: a GRPO step of 256 completions in one micro-batch does not fit an 80 GB card."""
    config = load_config(REPO / "config" / "qwen-math-1.5b_openr1_grpo.yaml")
    config["runs"]["grpo"]["micro_batch_size"] = None
    with pytest.raises(ConfigError, match=r"train job of grpo needs about \d+ GB .*micro_batch_size"):
        check_fits(config)
    config["runs"]["grpo"]["micro_batch_size"] = 4
    config["attribute"]["stack_ig_steps"] = True  # think-on pairs of 1,024 tokens, 5 steps at once
    with pytest.raises(ConfigError, match=r"attribute_think job of grpo needs .*attribute.stack_ig_steps: false"):
        check_fits(config)


@pytest.mark.parametrize(
    ("config_name", "change", "message"),
    [
        ("qwen-math-1.5b_openr1_sft.yaml", {"max_new_tokens": 2048}, "trains on completions of up to 3836 tokens"),
        ("r1-distill-vs-qwen-math.yaml", {"max_new_tokens": 8192}, "reads 4096 tokens at most"),
    ],
)
def test_evaluation_lengths_that_would_bias_accuracy_are_refused(config_name, change, message):
    config = load_config(REPO / "config" / config_name)
    config["evaluate"] = {**config["evaluate"], **change}
    with pytest.raises(ConfigError, match=message):
        check_fits(config)


def test_eap_ig_on_an_8b_model_fits_only_with_steps_in_turn():
    """Issue 30: stacked IG steps on Qwen3-8B's think-on pairs need about 150 GB; the z buffer,
    once a whole batch's (40 GB), is bounded at sparks.memory.DELTA_ELEMENTS numbers."""
    from sparks import memory

    qwen3 = KNOWN_SHAPES["Qwen/Qwen3-8B"]
    assert (
        memory.eap_ig(qwen3, 2, 1024, 5, stacked=False).total / memory.GB
        < 80
        < memory.eap_ig(qwen3, 2, 1024, 5, True).total / memory.GB
    )
    assert memory.DELTA_ELEMENTS * 4 / memory.GB < 0.3  # the edge buffer, stacked or not
    config = load_config(REPO / "config" / "qwen3-8b-think.yaml")
    config["attribute"]["stack_ig_steps"] = True
    with pytest.raises(ConfigError, match="attribute_think job of qwen3 needs about .*attribute.stack_ig_steps: false"):
        check_fits(config)


def test_the_workflow_refuses_a_config_whose_job_cannot_fit(tmp_path):
    raw = __import__("yaml").safe_load((REPO / "config" / "qwen-math-1.5b_openr1_grpo.yaml").read_text())
    raw["runs"]["grpo"].pop("micro_batch_size")
    (tmp_path / "c.yaml").write_text(__import__("yaml").safe_dump(raw))
    result = snakemake(tmp_path, "-n", "--configfile", str(tmp_path / "c.yaml"))
    assert result.returncode != 0 and "train job of grpo needs about" in result.stdout + result.stderr


def test_training_memory_holds_gradients_beside_activations_only_when_accumulating():
    """One micro-batch per step: the backward frees activations as it writes gradients (the peak
    holds the larger); accumulating, later micro-batches' activations sit beside the gradients."""
    from sparks import memory

    shape = KNOWN_SHAPES["Qwen/Qwen2.5-0.5B"]
    once = memory.training(shape, 4, 256)
    accumulated = memory.training(shape, 4, 256, accumulation=8)
    activations = memory.trained_activations(shape, 4, 256, memory.FLOAT32, checkpointing=False)
    assert set(once.terms) == {"weights", "optimizer", "activations"} and once.terms["activations"] == activations
    assert accumulated.total == pytest.approx(once.total + shape.params * memory.FLOAT32)  # plus the gradients
    sharded = memory.training(shape, 4, 256, gpus=4, strategy="zero3", accumulation=8)
    assert sharded.terms["weights"] == once.terms["weights"] / 4 and sharded.terms["activations"] == activations


def test_a_smoke_test_may_evaluate_shorter_than_it_trains():
    """evaluate.short_generation_ok accepts short generations on purpose (config/hub_shaped_cpu.yaml);
    a model asked to read past its context is refused all the same."""
    config = load_config(REPO / "config" / "qwen-math-1.5b_openr1_sft.yaml")
    config["evaluate"] = {**config["evaluate"], "max_new_tokens": 2048, "short_generation_ok": True}
    check_fits(config)
    config["evaluate"]["max_new_tokens"] = 8192
    with pytest.raises(ConfigError, match="reads 4096 tokens at most"):
        check_fits(config)


def test_an_anchored_run_plans_its_reference_copy_and_the_head_ablations():
    """runs.<name>.heads.anchor keeps a float32 copy of the start beside the trainer; a
    calculation_heads set costs one evaluation per head of the base, plus the unablated one."""
    config = load_config(REPO / "config" / "head-aware-study.yaml")
    jobs = plan_jobs(config)
    train = {row["of"]: row for row in jobs.filter(pl.col("rule") == "train").iter_rows(named=True)}
    plain, anchored = train["sft-s0"], train["sftanchor-s0"]
    assert anchored["peak_gb"] > plain["peak_gb"] and anchored["gpu_hours"] > plain["gpu_hours"]
    assert train["sftfreeze-s0"]["peak_gb"] == plain["peak_gb"]
    ablations = jobs.filter(pl.col("rule") == "head_ablations")
    evaluate = jobs.filter((pl.col("rule") == "evaluate") & (pl.col("of") == "sft-s0"))
    assert ablations.height == 1 and ablations["gpu_hours"][0] == pytest.approx(33 * evaluate["gpu_hours"][0])
