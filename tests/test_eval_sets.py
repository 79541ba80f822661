"""Evaluation sets per run (runs.<name>.evaluate_on): one evaluate job per checkpoint and set,
interventions on each set, per-set tables equal to evaluating each set alone, and the
per-benchmark figure's numbers."""

from __future__ import annotations

from types import SimpleNamespace

import polars as pl
import pytest
from conftest import REPO

from sparks import layout, workflow
from sparks.config import ConfigError, check_config, eval_sets
from sparks.plot.benchmarks import gains, set_accuracy, set_scaling

SETS = {"arithlong": {"long": 5}, "arithshort": {"one": 1}}


def with_sets(raw: dict) -> dict:
    for name, difficulties in SETS.items():
        raw["tasks"][name] = {"source": "synthetic", "difficulties": difficulties, "n_train": 1, "n_eval": 6, "n_pairs": 1}
    raw["runs"]["sft"]["evaluate_on"] = list(SETS)
    raw["runs"]["grpo"]["evaluate_on"] = None
    return raw


def test_the_dag_has_one_evaluate_job_per_checkpoint_and_set(raw_config):
    config = check_config(with_sets(raw_config))
    assert eval_sets(config, "sft") == ["arith", *SETS]
    graph = workflow.Workflow(config, "c.yaml", steps_of=lambda run: [0, 30, 60])
    jobs = graph.jobs()
    per_run = {rule: sum(1 for j in jobs if j.rule == rule and j.of == "sft") for rule in ("evaluate", "intervene")}
    assert per_run == {"evaluate": 3 * 3, "intervene": 3}  # three checkpoints x three sets; interventions per set
    sets = graph.set_tables("sft")
    assert sets["set_passk"] == [layout.passk("sft", s, t, "embedded") for t in SETS for s in (0, 30, 60)]
    assert sets["set_eval"] == [layout.eval_samples("sft", s, t, "embedded") for t in SETS for s in (0, 60)]
    assert graph.set_tables("grpo") == {}  # its own task only
    on_long = graph.intervene_inputs(SimpleNamespace(run="sft", task="arithlong"))
    assert on_long["cohorts"] == layout.circuits("cohorts", "sft", "arith", "embedded")  # the run's circuits, its own task


def test_the_paper_configs_plan_one_evaluate_job_per_checkpoint_and_set():
    import yaml

    from sparks.plan import plan_jobs, planned_steps

    raw = yaml.safe_load((REPO / "config" / "qwen-math-1.5b_gsm8k_grpo.yaml").read_text())
    raw["tasks"]["aime24"] = {"source": "aime24", "path": "Maxwell-Jia/AIME_2024", "n_eval": 30}
    raw["runs"]["grpo"]["evaluate_on"] = ["aime24"]
    config = check_config(raw)
    steps = planned_steps("grpo", config["runs"]["grpo"])
    assert plan_jobs(config).filter(pl.col("rule") == "evaluate").height == 2 * len(steps)


def test_an_unknown_set_is_refused_by_name(raw_config):
    raw_config["runs"]["sft"]["evaluate_on"] = ["gsm8k"]
    with pytest.raises(ConfigError, match=r"runs.sft.evaluate_on names 'gsm8k'.*use some of: arith"):
        check_config(raw_config)


@pytest.mark.slow
def test_each_set_evaluates_as_it_does_alone(raw_config, tiny_model_dir, tmp_path):
    """A run evaluated on three sets writes three tables whose numbers equal evaluating each set as
    the run's own task."""
    from sparks.evaluate import evaluate_stage
    from sparks.prepare import prepare_data
    from sparks.tables import read_table
    from sparks.train.given import write_given_run

    raw = with_sets(raw_config)
    raw["runs"] = {
        "m": {
            "method": "models",
            "task": "arith",
            "evaluate_on": list(SETS),
            "checkpoints": [{"step": 0, "source": str(tiny_model_dir)}],
        }
    }
    raw["evaluate"] = {"n_samples": 2, "max_new_tokens": 12, "k": [1, 2]}
    raw["tasks"]["arith"]["n_eval"] = 4
    together = check_config(raw)
    provenance = ("created_at", "machine", "config_hash")
    for task in together["tasks"]:
        prepare_data(together, task, tiny_model_dir, tmp_path / f"{task}.parquet", tmp_path / f"{task}_pairs.parquet")
    manifest = write_given_run(together, "m", tmp_path / "m" / "checkpoints.json", tmp_path / "m" / "log.parquet")
    for task in eval_sets(together, "m"):
        alone = check_config({**raw, "runs": {"m": {**raw["runs"]["m"], "task": task, "evaluate_on": None}}})
        for config, name in ((together, "together"), (alone, "alone")):
            evaluate_stage(
                config,
                manifest,
                0,
                task,
                tmp_path / f"{task}.parquet",
                tmp_path / f"{name}_eval.parquet",
                tmp_path / f"{name}_{task}.parquet",
            )
        tables = [read_table(tmp_path / f"{name}_{task}.parquet", "passk").drop(provenance) for name in ("together", "alone")]
        assert tables[0].equals(tables[1]) and set(tables[0]["task"]) == {task}


def test_benchmark_numbers_from_hand_made_tables():
    passk = pl.DataFrame(
        {"task": ["a", "a", "a", "b"], "step": [0, 0, 10, 0], "difficulty": ["easy", "hard", "easy", "all"],
         "k_samples": [1, 1, 1, 1], "accuracy": [1.0, 0.0, 0.5, 0.25], "accuracy_se": [0.0, 0.0, 0.1, 0.1], "n_problems": [3, 1, 4, 8]}
    )  # fmt: skip
    accuracy = set_accuracy(passk)
    assert accuracy.filter((pl.col("task") == "a") & (pl.col("step") == 0))["accuracy"][0] == pytest.approx(0.75)  # weighted
    interventions = pl.DataFrame(
        {"task": ["a"] * 5, "kind": ["scale", "scale", "scale", "scale", "ablate"], "difficulty": ["all"] * 5,
         "heads_from": ["none", "emergent", "emergent", "outside", "emergent"], "alpha": [None, 2.0, 2.0, 2.0, None],
         "k_samples": [4, 2, 4, 4, 4], "accuracy": [0.5, 0.25, 0.25, 0.9, 0.1], "n_samples": [8] * 5}
    )  # fmt: skip
    scaled = set_scaling(interventions, "emergent")
    assert scaled.rows() == [("a", 1.0, 0.5), ("a", 2.0, 0.25)]  # the unmodified model at 1; no control, no ablation, k once
    samples = pl.DataFrame(
        {"task": ["a"] * 8 + ["b"] * 4, "step": [0, 0, 0, 0, 10, 10, 10, 10, 0, 0, 5, 5], "sample_id": [0, 1, 2, 3] * 2 + [0, 1] * 2,
         "correct": [False, False, True, True, True, True, True, False, True, True, False, False]}
    )  # fmt: skip
    table = gains(samples)
    a = table.filter(pl.col("task") == "a").row(0, named=True)
    assert (a["base"], a["final"], a["change"], a["n_problems"]) == (0.5, 0.75, 0.25, 4)
    assert a["low"] < 0 < a["high"]  # +1, +1, 0, -1 over four problems: the interval holds 0
    assert table["task"].to_list() == ["a", "b"]  # largest gain first; b lost everything


def test_the_report_says_what_circuits_and_accuracy_are_measured_on(raw_config):
    from sparks.plot.report import behaviour_note

    raw_config["attribute"]["think"] = False
    raw_config["runs"]["grpo"]["evaluate_on"] = None
    config = check_config(raw_config)
    note = behaviour_note(config, "grpo")
    assert "operand pairs of arith, think off" in note and "think-on prompts of arith" in note
    assert "differ in the think mode</strong>" in note  # the embedded default's circuits are think-off
    assert "the think mode and the problems" in behaviour_note(config, "sft")  # sft also answers arithlong
    raw_config["attribute"].update(think=True, compare_think_at="none")
    assert "Warning" not in behaviour_note(check_config(raw_config), "grpo")
