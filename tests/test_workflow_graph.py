"""sparks.workflow without Snakemake: the rules it knows are the Snakefile's, their resources,
the SLURM profile's GPU list, and the files each input function asks for."""

from __future__ import annotations

import re
import subprocess
import sys
from types import SimpleNamespace

import pytest
import yaml
from conftest import ENV, REPO

from sparks import layout, workflow
from sparks.config import check_config
from sparks.evaluate import EvaluateSettings, conditions
from sparks.plot import INPUTS as PLOT_INPUTS
from sparks.plot import SET_INPUTS

STEPS = {"sft": [0, 30, 60], "grpo": [0, 40], "distill": [0, 30]}


@pytest.fixture
def graph(raw_config) -> workflow.Workflow:
    return workflow.Workflow(check_config(raw_config), "workflow_config.yaml", lambda run: STEPS[run])


def test_the_rules_are_the_snakefiles():
    listed = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--list-rules"],
        cwd=REPO, capture_output=True, text=True, env=ENV, check=True,
    )  # fmt: skip
    # merge_interventions exists with evaluate.split_interventions only
    assert set(listed.stdout.split()) | {"merge_interventions"} == {*workflow.GPU_RULES, *workflow.CPU_RULES, "all"}
    assert not set(workflow.GPU_RULES) & set(workflow.CPU_RULES)


def test_resources_follow_the_config(raw_config):
    raw_config["resources"] = {"train": {"mem_mb": 9000, "runtime": 600, "gpus": 4}, "replicates": {"mem_mb": 1234, "runtime": 7}}
    config = check_config(raw_config)
    train = {"mem_mb": 4 * 9000, "runtime": 600, "cpus_per_task": 16, "gpu": 4, "nodes": 1}  # memory and cores per GPU
    assert workflow.resources(config, "train") == train
    assert workflow.resources(config, "attribute") == {"mem_mb": 8000, "runtime": 60, "cpus_per_task": 1, "gpu": 1, "nodes": 1}
    assert workflow.resources(config, "evaluate")["cpus_per_task"] == 4  # a generating rule: tokenisers, vLLM's processes
    assert workflow.resources(config, "claims") == {"mem_mb": 1234, "runtime": 7, "cpus_per_task": 1}  # the replicates section
    raw_config["resources"]["evaluate"] = {"mem_mb": 1000, "runtime": 5, "cpus": 12}
    assert workflow.resources(check_config(raw_config), "evaluate")["cpus_per_task"] == 12
    with pytest.raises(KeyError, match="no rule 'atribute'"):
        workflow.resources(config, "atribute")


def test_the_slurm_profile_sends_exactly_the_gpu_rules_to_the_gpu_partition(monkeypatch):
    import yte

    text = (REPO / "profiles" / "slurm" / "config.yaml").read_text()
    for var in ("SPARKS_GPU_PARTITION", "SPARKS_GPU_MODEL", "SPARKS_GPU_CONSTRAINT"):
        monkeypatch.delenv(var, raising=False)
    assert "set-resources" not in yte.process_yaml(text)
    monkeypatch.setenv("SPARKS_GPU_PARTITION", "gpuq")
    monkeypatch.setenv("SPARKS_GPU_CONSTRAINT", "h100|a100_80g")
    placed = yte.process_yaml(text)["set-resources"]
    assert set(placed) == set(workflow.GPU_RULES)
    assert all(v == {"slurm_partition": "gpuq", "constraint": "h100|a100_80g"} for v in placed.values())


def test_input_functions_name_the_layouts_files(graph):
    run = SimpleNamespace(run="distill", task="arith", exp="embedded")
    assert graph.run_inputs(run) == {
        "base": layout.model("base", "embedded"),
        "problems": layout.problems("arith", "embedded"),
        "teacher_traces": layout.teacher_traces("distill", "embedded"),
    }
    assert "teacher_traces" not in graph.run_inputs(SimpleNamespace(run="sft"))
    tables = graph.attribution_tables(run)
    assert tables["heads"] == [layout.attribution("heads", "distill", s, "arith", "embedded") for s in (0, 30)]
    plot = graph.plot_inputs(run)
    # the embedded default compares think modes (not pair kinds), and evaluates on arithlong
    assert list(plot) == [*(n for n in PLOT_INPUTS if n != "pair_kinds"), *SET_INPUTS]
    assert plot["passk"] == [layout.passk("distill", s, "arith", "embedded") for s in (0, 30)]
    assert plot["failure_shares"] == layout.failures("failure_shares", "distill", "embedded")
    parts = graph.intervention_parts("table")(run)
    assert len(parts) == len(conditions(EvaluateSettings.from_config(graph.config))) and len(set(parts)) == len(parts)
    with pytest.raises(KeyError, match="'cohort'"):
        graph.run_table("cohort", "sft", "arith")


def test_report_and_claims_inputs_cover_every_run(graph):
    report = graph.report_inputs(None)
    assert report["cohorts"] == [layout.circuits("cohorts", r, "arith", "embedded") for r in ("sft", "grpo", "distill")]
    assert report["models"] == [layout.model("base", "embedded"), layout.model("teacher", "embedded")]
    steps = graph.report_step_inputs()
    assert sorted(steps) == sorted(f"{t}__{r}" for r in STEPS for t in ("heads", "passk"))
    assert steps["passk__sft"](None) == [layout.passk("sft", s, "arith", "embedded") for s in STEPS["sft"]]
    group = SimpleNamespace(group="sft", task="arith")
    replicates = graph.replicate_inputs(group)
    assert list(replicates) == ["cohorts", "frequency", "emergence", "eval"] and len(replicates["eval"]) == 3
    claims = graph.claims_inputs(group)
    assert list(claims) == ["replicate_heads", "replicate_reward", "failures", "null_calls", "think_overlap"]


def test_settings_params_change_with_their_section_only(graph, raw_config):
    job = SimpleNamespace(run="sft")
    before = graph.settings("runs", "{run}")(job)
    raw_config["runs"]["grpo"]["max_steps"] = 400
    other = workflow.Workflow(check_config(yaml.safe_load(yaml.safe_dump(raw_config))), "x.yaml", graph.steps_of)
    assert other.settings("runs", "{run}")(job) == before
    raw_config["runs"]["sft"]["max_steps"] = 300
    changed = workflow.Workflow(check_config(raw_config), "x.yaml", graph.steps_of)
    assert changed.settings("runs", "{run}")(job) != before


def test_the_job_list_follows_the_run_kinds(raw_config):
    """Workflow.jobs: per checkpoint attribute and evaluate, a teacher job for distillation, one
    intervene job per condition when split, style pairs for a style task, one report."""
    from collections import Counter

    raw_config["attribute"] = {"pairs": "style", "think": True, "compare_think_at": "none"}
    raw_config["evaluate"] = {"split_interventions": True}
    raw_config["runs"]["grpo"]["evaluate_on"] = None  # its own task; the others also answer arithlong
    config = check_config(raw_config)
    jobs = Counter(workflow.Workflow(config, "c.yaml", lambda run: STEPS[run]).jobs())
    n_conditions = len(conditions(EvaluateSettings.from_config(config)))
    for run, steps in STEPS.items():
        on = "" if run == "grpo" else "arithlong"
        assert jobs[workflow.Job("attribute", run)] == jobs[workflow.Job("evaluate", run)] == len(steps)
        assert jobs[workflow.Job("evaluate", run, on)] == len(steps)  # and as many on arithlong
        assert jobs[workflow.Job("intervene", run)] == n_conditions and jobs[workflow.Job("merge_interventions", run)] == 1
        assert jobs[workflow.Job("style_pairs", run)] == 1 and jobs[workflow.Job("attribute_think", run)] == 0
    assert [job.of for job in jobs if job.rule == "teacher_traces"] == ["distill"]
    assert jobs[workflow.Job("report")] == 1 and {job.rule for job in jobs} <= {*workflow.GPU_RULES, *workflow.CPU_RULES}


def test_the_docs_list_the_gpu_rules():
    """The README names the GPU stages as sparks.workflow.GPU_RULES has them (the profile and plan read the list)."""
    readme = (REPO / "README.md").read_text()
    listed = re.search(r"\(`sparks\.workflow\.GPU_RULES`: ([^)]*)\)", readme)
    assert listed and re.findall(r"`(\w+)`", listed[1]) == list(workflow.GPU_RULES)
