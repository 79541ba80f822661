"""The Snakemake workflow: lint, format, planning, config errors, and one full DAG run."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from conftest import ENV, REPO, snakemake

from sparks.tables import read_table


def job_counts(output: str) -> dict[str, int]:
    table = output.split("Job stats:")[1].split("total")[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.MULTILINE)}


@pytest.fixture
def workdir(tmp_path) -> Path:
    shutil.copy(REPO / "workflow_config.yaml", tmp_path / "workflow_config.yaml")
    return tmp_path


def test_lint_is_clean(workdir):
    result = snakemake(workdir, "--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


def test_snakefmt_check():
    files = [str(REPO / "Snakefile"), *map(str, sorted((REPO / "rules").glob("*.smk")))]
    result = subprocess.run([sys.executable, "-m", "snakefmt", "--check", *files], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_one_target_plans_only_its_jobs(workdir):
    result = snakemake(workdir, "-n", "results/embedded/runs/sft/checkpoints.json")
    assert result.returncode == 0, result.stderr
    assert job_counts(result.stdout) == {"prepare_model": 1, "prepare_data": 1, "train": 1}
    assert "results/embedded/teacher" not in result.stdout


def test_one_head_table_plans_only_its_run(workdir):
    result = snakemake(workdir, "-n", "results/embedded/heads/sft/30/arith.parquet")
    assert result.returncode == 0, result.stderr
    assert job_counts(result.stdout) == {"prepare_model": 1, "prepare_data": 1, "train": 1, "attribute": 1}
    assert "runs/grpo" not in result.stdout


def test_distill_target_plans_the_teacher(workdir):
    result = snakemake(workdir, "-n", "results/embedded/runs/distill/checkpoints.json")
    assert job_counts(result.stdout) == {"prepare_model": 2, "prepare_data": 1, "teacher_traces": 1, "train": 1}


def test_bad_config_stops_before_any_job(workdir):
    config = yaml.safe_load((workdir / "workflow_config.yaml").read_text())
    config["runs"]["grpo"]["grpo"]["num_generation"] = 4
    (workdir / "workflow_config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(workdir, "-n")
    assert result.returncode != 0
    assert "config error: unknown config key runs.grpo.grpo.num_generation" in result.stdout + result.stderr
    assert not (workdir / "results").exists()


@pytest.mark.slow
def test_dag_writes_models_data_and_runs(dag_run):
    config = yaml.safe_load((REPO / "workflow_config.yaml").read_text())
    for role in ("base", "teacher"):
        assert (dag_run / role / "model.safetensors").is_file()
        accuracy = read_table(dag_run / role / "accuracy.parquet", "accuracy")
        one_step = accuracy.filter((pl.col("difficulty") == "1_ops") & pl.col("think"))
        assert one_step["accuracy"].item() >= 0.9  # a competent model (the teacher never answers think-off)
    read_table(dag_run / "data" / "arith_problems.parquet", "problems")
    pairs = read_table(dag_run / "data" / "arith_pairs.parquet", "pairs")
    assert (pairs["clean_answer"] != pairs["corrupt_answer"]).all()
    for run, settings in config["runs"].items():
        manifest = json.loads((dag_run / "runs" / run / "checkpoints.json").read_text())
        expected = list(range(0, settings["max_steps"] + 1, settings["save_steps"]))
        assert manifest["steps"] == expected
        assert len(set(manifest["model_hashes"].values())) == len(expected)  # every checkpoint differs
        for step in expected:
            assert (dag_run / "runs" / run / f"checkpoint-{step}" / "tokenizer.json").is_file()
        log = read_table(dag_run / "runs" / run / "train_log.parquet", "train_log")
        assert log["step"].to_list() == list(range(1, settings["max_steps"] + 1))
        assert log["loss"].null_count() == 0
    for rule in ("prepare_model", "prepare_data", "train", "attribute", "aggregate", "evaluate", "intervene", "plot"):
        assert list((dag_run / "logs" / rule).rglob("*.log")) and list((dag_run / "timings" / rule).rglob("*.tsv"))


@pytest.mark.slow
def test_dag_attributes_every_checkpoint(dag_run):
    config = yaml.safe_load((REPO / "workflow_config.yaml").read_text())
    for run, settings in config["runs"].items():
        for step in range(0, settings["max_steps"] + 1, settings["save_steps"]):
            heads = read_table(dag_run / "heads" / run / str(step) / "arith.parquet", "heads")
            assert heads.height == 4 * 8 and (heads["step"] == step).all() and (heads["run"] == run).all()
            edges = read_table(dag_run / "edges" / run / str(step) / "arith.parquet", "edges")
            assert edges["rank"].min() == 1 and edges["score"].is_finite().all()
            per_pair = read_table(dag_run / "pair_edges" / run / str(step) / "arith.parquet", "pair_edges")
            assert per_pair.height == 3 * 256 and per_pair["scores"].list.len().unique().to_list() == [edges.height]
            curve = read_table(dag_run / "faithfulness" / run / str(step) / "arith.parquet", "faithfulness")
            assert abs(curve["faithfulness"][0]) < 1e-4 and abs(curve["faithfulness"][-1] - 1) < 1e-4
            assert curve["metric_corrupt"][0] > 0.1  # the corrupted operand changes the answer distribution


@pytest.mark.slow
def test_dag_aggregates_every_run(dag_run):
    config = yaml.safe_load((REPO / "workflow_config.yaml").read_text())
    for run, settings in config["runs"].items():
        steps = list(range(0, settings["max_steps"] + 1, settings["save_steps"]))
        circuits = dag_run / "circuits" / run / "arith"
        circuit = read_table(circuits / "circuit.parquet", "circuit")
        assert sorted(circuit["step"].unique()) == steps and circuit.height == len(steps) * 32
        assert circuit.filter(pl.col("step") == 0)["in_circuit"].any()
        cohorts = read_table(circuits / "cohorts.parquet", "cohorts")
        assert set(cohorts["status"]) <= {"emergent", "maintained", "lost"}
        frequency = read_table(circuits / "frequency.parquet", "frequency")
        assert frequency.height == 32 and frequency["frequency"].is_between(0, 1).all()
        stability = read_table(circuits / "stability.parquet", "stability")
        assert stability["p_in_circuit"].is_between(0, 1).all()
        similarity = read_table(circuits / "similarity.parquet", "similarity")
        assert similarity.height == len(steps) - 1 and similarity["jaccard_edges"].is_between(0, 1).all()


@pytest.mark.slow
def test_dag_benchmarks_every_checkpoint(dag_run):
    config = yaml.safe_load((REPO / "workflow_config.yaml").read_text())
    problems = read_table(dag_run / "data" / "arith_problems.parquet", "problems").filter(pl.col("split") == "eval")
    for run, settings in config["runs"].items():
        for step in range(0, settings["max_steps"] + 1, settings["save_steps"]):
            samples = read_table(dag_run / "bench" / run / "eval" / str(step) / "arith.parquet", "eval")
            assert samples.height == problems.height * 4  # evaluate.n_samples
            assert samples.filter(pl.col("difficulty") == "easy")["correct"].mean() > 0.8  # competent on 1-op chains
        table = read_table(dag_run / "bench" / run / "interventions" / "arith.parquet", "interventions")
        assert set(table["kind"]) == {"ablate", "scale"} and "none" in set(table["heads_from"])
        assert table["accuracy"].is_between(0, 1).all()


@pytest.mark.slow
def test_dag_draws_every_figure_and_the_report(dag_run):
    from matplotlib.image import imread

    from sparks.config import load_config
    from sparks.plot import figure_names

    config = load_config(REPO / "workflow_config.yaml")
    names = figure_names(config)
    assert "think_modes" in names
    for run in config["runs"]:
        for name in names:
            png = dag_run / "figures" / run / f"arith_{name}.png"
            image = imread(png)
            assert image.shape[:2] == (600, 800), png
            assert image[..., :3].std() > 0.05, f"{png} looks blank"
            assert (png.with_suffix(".svg")).stat().st_size > 10_000
    report = (dag_run / "report.html").read_text()
    assert report.count("data:image/png;base64,") == len(names) * len(config["runs"])
    assert report.count("Think on vs think off") == len(config["runs"])
    assert all(f"run {run}" in report for run in config["runs"])


@pytest.mark.slow
def test_dag_compares_think_modes_at_each_runs_ends(dag_run):
    config = yaml.safe_load((REPO / "workflow_config.yaml").read_text())
    for run, settings in config["runs"].items():
        table = read_table(dag_run / "circuits" / run / "arith" / "think_modes.parquet", "think_modes")
        assert sorted(table["step"].unique()) == [0, settings["max_steps"]]
        assert table.group_by("step").len()["len"].to_list() == [32, 32]  # every head, one mode each
        off = read_table(dag_run / "heads" / run / "0" / "arith.parquet", "heads")  # the main (think-off) table
        joined = table.filter(pl.col("step") == 0).join(off, on=["layer", "head"])
        assert (joined["score_think_off"] == joined["score"]).all()
        on = read_table(dag_run / "think" / "on" / "heads" / run / "0" / "arith.parquet", "heads")
        assert not on.select("layer", "head", "score").equals(off.select("layer", "head", "score"))


@pytest.mark.slow
def test_dag_classifies_every_sample_once(dag_run):
    config = yaml.safe_load((REPO / "workflow_config.yaml").read_text())
    for run, settings in config["runs"].items():
        failures = read_table(dag_run / "bench" / run / "failures.parquet", "failures")
        steps = range(0, settings["max_steps"] + 1, settings["save_steps"])
        evals = read_table([dag_run / "bench" / run / "eval" / str(s) / "arith.parquet" for s in steps], "eval")
        classified = failures.filter(pl.col("origin") == "eval")
        joined = evals.join(classified, on=["step", "sample_id", "k"], how="full", coalesce=True)
        assert joined.height == evals.height == classified.height  # each sample exactly once
        assert (joined["correct"] == joined["correct_right"]).all()
        assert ((joined["category"] == "correct") == joined["correct"]).all()
        samples = read_table(dag_run / "bench" / run / "interventions" / "arith_samples.parquet", "intervention_samples")
        assert failures.filter(pl.col("origin") == "intervention").height == samples.height
        changes = read_table(dag_run / "bench" / run / "failure_changes.parquet", "failure_changes")
        base_final = changes.filter(pl.col("comparison") == "final_vs_base")
        assert set(base_final["difficulty"]) == {"easy", "medium", "hard"}
        assert (base_final["ci_low"] <= base_final["delta"] + 1e-12).all()
        assert (base_final["delta"] <= base_final["ci_high"] + 1e-12).all()


@pytest.mark.slow
def test_grpo_reward_rises(dag_run):
    """The last quarter of GRPO steps earns more reward than the first quarter: a one-sided Welch
    t statistic above 2 (each step's reward is a mean over its prompts' completions)."""
    log = read_table(dag_run / "runs" / "grpo" / "train_log.parquet", "train_log").sort("step")
    quarter = log.height // 4
    first, last = log["reward"].head(quarter).to_numpy(), log["reward"].tail(quarter).to_numpy()
    t = (last.mean() - first.mean()) / np.sqrt(first.var(ddof=1) / quarter + last.var(ddof=1) / quarter)
    assert t > 2, f"GRPO reward did not rise: first quarter {first.mean():.3f}, last quarter {last.mean():.3f}, t = {t:.2f}"


@pytest.mark.slow
def test_rerun_has_nothing_to_do(dag_run):
    result = snakemake(dag_run.parent.parent, "-n")
    assert result.returncode == 0, result.stderr
    assert "Nothing to be done" in result.stdout + result.stderr


@pytest.mark.slow
def test_killed_attribute_job_reruns_to_the_same_table(dag_run, tmp_path):
    """SIGKILL snakemake and its attribute job (a node crash) while the job writes its tables:
    what it left is never trusted, and the rerun writes the same tables as the undisturbed run."""
    import os
    import signal
    import time

    from sparks.attribute import TABLES

    work = tmp_path / "work"
    shutil.copytree(dag_run.parent.parent, work)  # file times kept: nothing else is out of date
    results = work / "results" / "embedded"
    outputs = [results / kind / "sft" / "30" / "arith.parquet" for kind in TABLES]
    for path in outputs:
        path.unlink()
    targets = [str(p.relative_to(work)) for p in outputs]
    profile = str(REPO / "profiles" / "local")
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(work)]
    from conftest import ENV

    crashed = subprocess.Popen([*cmd, "--profile", profile, *targets], env=ENV, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    folders = {p.parent for p in outputs}
    deadline = time.monotonic() + 600
    while crashed.poll() is None and time.monotonic() < deadline:
        if any(p.exists() for p in outputs):  # one table is in place, the others are being written
            break
        time.sleep(0.002)
    os.killpg(crashed.pid, signal.SIGKILL)  # snakemake and the job, as a crashed node would
    crashed.wait()
    written = [p for p in outputs if p.exists()]
    assert len(written) < len(TABLES), "the job finished before it could be killed"

    # A killed snakemake leaves its lock: `--unlock` once (as after any crash), then rerun.
    assert snakemake(work, "--unlock").returncode == 0
    # Without being told to, snakemake refuses to build on what the killed job left behind.
    plan = snakemake(work, *targets, "-n")
    assert plan.returncode != 0 and "incomplete" in (plan.stdout + plan.stderr).lower()
    # The profile reruns the job; its tables equal the undisturbed run's, and no temporary is left.
    rerun = snakemake(work, "--profile", profile, *targets)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert job_counts(rerun.stdout + rerun.stderr).get("attribute") == 1
    for kind, path in zip(TABLES, outputs):
        before = read_table(dag_run / kind / "sft" / "30" / "arith.parquet", kind).drop("created_at")
        assert read_table(path, kind).drop("created_at").equals(before), kind
    assert not [f for d in folders for f in d.iterdir() if ".tmp-" in f.name]


PAPER_SCALE = sorted(p.name for p in (REPO / "config").glob("*.yaml") if p.name != "hub_shaped_cpu.yaml")  # CPU: test_hub_shaped


@pytest.mark.parametrize("experiment", PAPER_SCALE)
def test_paper_scale_config_plans_cleanly(experiment, tmp_path):
    """Each cluster experiment under config/ plans offline (no model or dataset is touched before
    its job runs), with one GPU-sized job per stage and the config's own resources."""
    config = yaml.safe_load((REPO / "config" / experiment).read_text())
    result = snakemake(tmp_path, "-n", "--configfile", str(REPO / "config" / experiment))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    counts = job_counts(result.stdout)
    assert counts["train"] == len(config["runs"]) and counts["prepare_data"] == len(config["tasks"])
    train_mem = config["resources"]["train"]["mem_mb"]
    assert re.search(rf"checkpoint train:(?:.|\n)*?resources: [^\n]*gpu=1, mem_mb={train_mem}", result.stdout)
    assert f"results/{config['experiment']}/report.html" in result.stdout


def test_two_config_files_are_refused(workdir):
    other = REPO / "config" / PAPER_SCALE[0]
    result = snakemake(workdir, "-n", "--configfile", "workflow_config.yaml", str(other))
    assert result.returncode != 0 and "read one config file, got 2" in result.stdout + result.stderr


def planned_jobs(output: str) -> list[dict]:
    """The jobs of a ``snakemake -n -p`` plan: rule, input, output, log and shell command."""
    jobs = []
    for block in re.split(r"^(?:local)?(?:rule|checkpoint) ", output, flags=re.MULTILINE)[1:]:
        rule = block.split(":", 1)[0]
        fields = dict(re.findall(r"^    (input|output|log): (.*)$", block, re.MULTILINE))
        shell = re.search(r"^Shell command: (.*)$", block, re.MULTILINE)
        jobs.append({
            "rule": rule,
            **{key: fields[key].split(", ") if key in fields else [] for key in ("input", "output", "log")},
            "shell": shell[1] if shell else None,
        })  # fmt: skip
    return jobs


@pytest.mark.slow
def test_each_stage_reads_only_the_files_its_rule_declares(dag_run, tmp_path):
    """One job of each rule downstream of training, rerun by hand in an empty folder on copies of
    only its declared inputs, renamed and moved (a manifest travels with the checkpoint folders it
    lists): each succeeds and writes the same tables. A stage that globbed the results folder,
    walked up from a path, or read a file its rule does not declare would fail here."""
    from sparks import layout
    from sparks.manifest import read_manifest

    work = dag_run.parent.parent
    targets = {
        "prepare_data": layout.problems("arith", "embedded"),
        "attribute_think": layout.think_attribution("heads", "on", "sft", 0, "arith", "embedded"),
        "evaluate": layout.eval_samples("sft", 30, "arith", "embedded"),
        "aggregate": layout.circuits("circuit", "sft", "arith", "embedded"),
        "think_modes": layout.circuits("think_modes", "sft", "arith", "embedded"),
        "intervene": layout.interventions("sft", "arith", "embedded"),
        "failures": layout.failures("failures", "sft", "embedded"),
        "plot": layout.report_section("sft", "arith", "embedded"),
        "report": layout.report("embedded"),
    }
    jobs = {}
    # prepare_data planned on its own: forcing it would re-plan training, whose outputs are then unknown
    for group in ([targets["prepare_data"]], [t for rule, t in targets.items() if rule != "prepare_data"]):
        plan = snakemake(work, "-n", "-p", "-f", *group)
        assert plan.returncode == 0, plan.stderr[-3000:]
        jobs |= {j["rule"]: j for j in planned_jobs(plan.stdout + plan.stderr) if set(group) & set(j["output"])}
    assert set(jobs) == set(targets), sorted(jobs)

    for rule, job in jobs.items():
        here = tmp_path / rule
        (here / "in").mkdir(parents=True)
        shutil.copy(work / "workflow_config.yaml", here / "workflow_config.yaml")  # a param, not a results file
        moved = {}
        for i, path in enumerate(job["input"]):
            source, target = work / path, here / "in" / str(i) / Path(path).name
            if source.is_dir():
                shutil.copytree(source, target)
            else:
                target.parent.mkdir(parents=True)
                shutil.copy(source, target)
            if source.name == "checkpoints.json":
                manifest = read_manifest(source)
                for step in manifest.steps:
                    shutil.copytree(manifest.checkpoint(step), target.parent / manifest.folders[step])
            moved[path] = str(target)
        for i, path in enumerate(job["output"] + job["log"]):
            moved[path] = str(here / "out" / str(i) / Path(path).name)
            Path(moved[path]).parent.mkdir(parents=True)
        command = " ".join(moved.get(token, token) for token in job["shell"].split(" "))
        assert "results/" not in command, command
        done = subprocess.run(command, shell=True, cwd=here, env=ENV, capture_output=True, text=True, check=False)
        log = Path(moved[job["log"][0]]).read_text() if job["log"] else ""
        assert done.returncode == 0, f"{rule}: {command}\n{done.stderr[-2000:]}{log[-3000:]}"
        for path in job["output"]:
            if path.endswith(".parquet"):
                ours = pl.read_parquet(moved[path]).drop("created_at")
                assert ours.equals(pl.read_parquet(work / path).drop("created_at")), f"{rule}: {path} differs"
            else:
                assert Path(moved[path]).stat().st_size > 0, f"{rule}: {path} is empty"
