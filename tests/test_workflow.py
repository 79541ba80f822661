"""The Snakemake workflow: lint, format, planning, config errors, and one full DAG run with every
test that reads it (one file, so that pytest-xdist runs them on one worker and the DAG once)."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
import yaml
from conftest import REPO, job_counts, snakemake

from sparks import forkserver, layout
from sparks.attribute import AttributeSettings, select_pairs
from sparks.attribute.batches import pair_batches
from sparks.attribute.exact import head_patching_effects
from sparks.attribute.faithfulness import circuit_sizes, faithfulness_curve
from sparks.attribute.metrics import METRICS
from sparks.model.graph import Graph
from sparks.model.load import load_model, load_tokenizer
from sparks.tables import read_table


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
            effects = read_table(dag_run / "head_effects" / run / str(step) / "arith.parquet", "head_effects")
            assert (
                effects.height == 3 * 96 * 32 and effects["effect"].is_finite().all()
            )  # attribute.exact_pairs of each difficulty
            assert effects["effect"].min() >= -1e-6 and effects["effect"].max() > 1e-3  # KL: non-negative, not all zero
            moved = heads["weight_change"]
            assert (moved == 0).all() if step == 0 else (moved > 0).all()  # full training moves every head


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
        assert set(cohorts["status"]) <= {"emergent", "transient", "maintained", "lost"}
        frequency = read_table(circuits / "frequency.parquet", "frequency")
        assert frequency.height == 32 and frequency["frequency"].is_between(0, 1).all()
        stability = read_table(circuits / "stability.parquet", "stability")
        assert stability["p_in_circuit"].is_between(0, 1).all() and stability["effect_se"].null_count() == 0
        later = stability.filter(pl.col("step") > 0)
        assert later["p_change"].is_between(0, 1).all() and later["change_low"].null_count() == 0
        called = stability.filter(pl.col("called"))  # the rule, row by row
        assert (called["p_change"] >= 0.8).all() and ((called["change_low"] > 0) | (called["change_high"] < 0)).all()
        first_call = called.group_by("layer", "head").agg(pl.col("step").min().alias("cohort_step"))
        expected = cohorts.filter(pl.col("status").is_in(["emergent", "transient"])).select("layer", "head", "cohort_step")
        assert first_call.sort("layer", "head").equals(expected.sort("layer", "head"))
        agreement = read_table(circuits / "agreement.parquet", "agreement")
        assert agreement.height == len(steps) and (agreement["pearson"] > 0.5).all()  # the large effects agree
        null = read_table(circuits / "null_calls.parquet", "null_calls")
        assert null.height == 2 * len(steps) and (null["n_pairs"] == 3 * 256 // 2).all()
        rules = read_table(circuits / "circuit_rules.parquet", "circuit_rules")
        assert set(rules["rule"]) == {"top_n", "faithfulness"} and rules.filter(pl.col("rule") == "top_n")[
            "n_edges"
        ].unique().to_list() == [40]
        assert read_table(circuits / "planted.parquet", "planted").is_empty()  # no run of the default trains only some heads
        similarity = read_table(circuits / "similarity.parquet", "similarity")
        assert similarity.height == len(steps) - 1 and similarity["jaccard_edges"].is_between(0, 1).all()
        importance = read_table(circuits / "importance.parquet", "importance")
        assert importance.height == len(steps) * 32 and importance["mean_effect"].is_between(-1, 1).all()
        sums = importance.group_by("step").agg(pl.col("importance").sum())["importance"]
        assert ((sums - 1).abs() < 1e-9).all()  # normalised per checkpoint


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
        cohorts = read_table(dag_run / "circuits" / run / "arith" / "cohorts.parquet", "cohorts")
        if (cohorts["status"] == "emergent").any():  # each control labelled, each from its own pool
            assert {"emergent", "same_layer", "base_circuit", "outside"} <= set(table["heads_from"])
            base = {
                f"a{layer}.h{head}" for layer, head, step in cohorts.select("layer", "head", "cohort_step").rows() if step is None
            }
            ever = {f"a{layer}.h{head}" for layer, head in cohorts.select("layer", "head").rows()}
            for heads_from, heads in table.select("heads_from", "heads").rows():
                assert heads_from != "base_circuit" or set(heads.split()) <= base
                assert heads_from != "outside" or not set(heads.split()) & ever


@pytest.mark.slow
def test_dag_draws_every_figure_and_the_report(dag_run):
    from matplotlib.image import imread

    from sparks.config import load_config
    from sparks.plot import figure_names
    from sparks.plot.compare import CAPTIONS

    config = load_config(REPO / "workflow_config.yaml")
    names = figure_names(config)
    assert "think_modes" in names
    for run in config["runs"]:
        for name in names:
            png = dag_run / "figures" / run / f"arith_{name}.png"
            image = imread(png)
            assert image.shape[1] >= 1100, png  # 2x: drawn at 200 dpi
            assert image[..., :3].std() > 0.05, f"{png} looks blank"
            assert (png.with_suffix(".svg")).stat().st_size > 10_000
    report = (dag_run / "report.html").read_text()
    assert report.count("data:image/svg+xml;base64,") == len(names) * len(config["runs"]) + len(CAPTIONS)
    assert report.count("Think on vs think off") == len(config["runs"])
    assert all(f"Run {run} in detail" in report for run in config["runs"])
    assert "None" not in report and ">nan<" not in report  # a missing value is a dash
    summary = report[report.index('id="summary"') : report.index('id="trust"')]
    for run in config["runs"]:
        assert f'id="summary-{run}"' in summary and "emergent heads" in summary
    from sparks.aggregate.claims import VERDICTS

    found = set(re.findall(r'<span class="verdict-[a-z]+">([a-z ]+?)(?: \(allows up to [^)]*\))?</span>', summary))
    assert "not testable here" in found and found <= set(VERDICTS) and len(found) >= 2  # a tested claim too
    from sparks.registry import EMERGENCE_RULE, PAIRED_METHOD

    assert html.escape(PAIRED_METHOD) in report[report.index('id="terms"') :]  # the intervals' method, in a line
    trust = report[report.index('id="trust"') : report.index("<nav>")]
    assert html.escape(EMERGENCE_RULE) in trust
    for run in config["runs"]:  # one sentence per run from its numbers, the null's rate beside its own
        assert f"{run}: the test called" in trust and "the null" in trust
    assert "Spearman" in trust and "call(s) change with the rule" in trust


@pytest.mark.slow
def test_report_counts_equal_the_tables(dag_run):
    """The cohort figure counts every head of a checkpoint's circuit once, and its bars equal the
    circuit table; the report lists difficulties easiest first."""
    from sparks.plot.figures import status_counts

    config = yaml.safe_load((REPO / "workflow_config.yaml").read_text())
    for run in config["runs"]:
        circuits = dag_run / "circuits" / run / "arith"
        circuit = read_table(circuits / "circuit.parquet", "circuit")
        cohorts = read_table(circuits / "cohorts.parquet", "cohorts")
        counts = status_counts(circuit, cohorts)
        drawn = counts.filter(pl.col("n_heads") > 0).group_by("step").agg(pl.col("n_heads").sum()).sort("step")
        held = circuit.group_by("step").agg(pl.col("in_circuit").sum().cast(pl.Int64).alias("n_heads")).sort("step")
        assert drawn.equals(held.filter(pl.col("n_heads") > 0)), run
        assert circuit.filter(pl.col("in_circuit"))["status"].is_in(["maintained", "emergent", "transient", "new"]).all()
        lost = counts.filter(pl.col("band") == "lost").select("step", (-pl.col("n_heads")).alias("n"))
        lost_table = circuit.group_by("step").agg((pl.col("status") == "lost").sum().cast(pl.Int64).alias("n"))
        assert lost.sort("step").equals(lost_table.sort("step"))
        for cohort_step, heads in cohorts.filter(pl.col("status") == "emergent").group_by("cohort_step").len().rows():
            band = counts.filter((pl.col("band") == f"emergent {cohort_step}") & (pl.col("step") == cohort_step))
            assert band["n_heads"].item() == heads  # a cohort counts all its heads at its own step
    report = (dag_run / "report.html").read_text()
    accuracy = report[report.index("Accuracy, base vs final checkpoint") :]
    accuracy = accuracy[: accuracy.index("</table>")]
    found = re.findall(r'<td class="txt">(easy|medium|hard)</td>', accuracy)
    assert found == ["easy", "easy", "medium", "medium", "hard", "hard"]


@pytest.mark.slow
def test_report_opens_in_a_browser_and_explores_a_head(dag_run):
    """Chromium opens the report offline with no console error; a click on an emergent head shows
    its panel with the head tables' numbers; a full-page screenshot lands next to the report."""
    from chromium import open_page, require_or_skip

    require_or_skip()
    cohorts = read_table(dag_run / "circuits" / "sft" / "arith" / "cohorts.parquet", "cohorts")
    chosen = cohorts.sort(pl.col("status") != "emergent", "layer", "head")  # an emergent head if there is one
    layer, head = chosen.select("layer", "head").row(0)
    node = f"a{layer}.h{head}"
    with open_page(dag_run / "report.html") as page:
        page.click(f'#explorer-grids button[data-run="sft"][data-node="{node}"]')
        for step in (0, 150):
            heads = read_table(dag_run / "heads" / "sft" / str(step) / "arith.parquet", "heads")
            row = heads.filter((pl.col("layer") == layer) & (pl.col("head") == head)).row(0, named=True)
            cells = page.evaluate(
                f"""[...document.querySelectorAll('#explorer-panel table[data-run="sft"] tr[data-step="{step}"] td')]"""
                ".map(td => td.textContent)"
            )
            assert cells[1:3] == [f"{row['score']:.4f}", str(row["rank"])]
        assert page.evaluate("document.querySelectorAll('#explorer-panel .xrun').length") == 3  # every run
        page.click('input[data-toggle="grpo"]')  # runs toggle
        assert page.evaluate("document.querySelectorAll('#explorer-grids .xgrid').length") == 2
        page.screenshot(dag_run / "report.png")
        assert page.errors == []
        print(f"report: {page.height()} px tall, loaded in {page.load_ms():.0f} ms")


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
def test_local_jobs_start_in_the_fork_server(dag_run):
    """Every attribute and evaluate job of the local run was forked by sparks.forkserver (only
    jobs that start while it preloads, at the very beginning, run in their own process), and
    none was refused for its environment."""
    forked = [argv[0] for _, argv in forkserver.forked(dag_run.parent.parent / ".snakemake" / "sparks-forkserver.log")]
    for stage, rules in (("attribute", ("attribute", "attribute_think")), ("evaluate", ("evaluate",))):
        jobs = sum(len(list((dag_run / "timings" / rule).rglob("*.tsv"))) for rule in rules)
        assert jobs and forked.count(stage) == jobs, f"{stage}: {forked.count(stage)} of {jobs} jobs forked"
    assert not [p for p in (dag_run / "logs").rglob("*.log") if "not using the fork server" in p.read_text()]


@pytest.mark.slow
def test_rerun_has_nothing_to_do(dag_run):
    result = snakemake(dag_run.parent.parent, "-n")
    assert result.returncode == 0, result.stderr
    assert "Nothing to be done" in result.stdout + result.stderr


CPU_CONFIGS = (
    "hub_shaped_cpu.yaml",
    "embedded-study.yaml",
    "head-aware-study.yaml",
)  # test_hub_shaped; test_embedded_study_plans
PAPER_SCALE = sorted(p.name for p in (REPO / "config").glob("*.yaml") if p.name not in CPU_CONFIGS)


def test_embedded_study_plans(tmp_path):
    """config/embedded-study.yaml: three replicates of each run on one base, and their comparison."""
    result = snakemake(tmp_path, "-n", "--configfile", str(REPO / "config" / "embedded-study.yaml"))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    counts = job_counts(result.stdout)
    assert counts["train"] == 15 and counts["prepare_model"] == 2  # sft, grpo, distill, sham and planted, 3 replicates each
    assert counts["replicates"] == counts["claims"] == counts["plot_replicates"] == 5
    assert counts["teacher_traces"] == 6  # distill's from the teacher, sham's from the base itself


@pytest.mark.parametrize("experiment", PAPER_SCALE)
def test_paper_scale_config_plans_cleanly(experiment, tmp_path):
    """Each cluster experiment under config/ plans offline (no model or dataset is touched before
    its job runs), with one GPU-sized job per stage and the config's own resources."""
    config = yaml.safe_load((REPO / "config" / experiment).read_text())
    result = snakemake(tmp_path, "-n", "--configfile", str(REPO / "config" / experiment))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    counts = job_counts(result.stdout)
    # every run's claims (rule claims) read its interventions, which need its task's problems
    own = {run["task"] for run in config["runs"].values()}  # evaluation sets join the DAG once a run has checkpoints
    assert counts["train"] == len(config["runs"]) and counts["prepare_data"] == len(own)
    assert counts["replicates"] == counts["claims"] == len(config["runs"])
    train_mem = config["resources"]["train"]["mem_mb"]
    gpus = config["resources"]["train"].get("gpus", 1)  # memory per GPU process; 4 cores per GPU, on one node
    train = rf"cpus_per_task={4 * gpus}, gpu={gpus}, nodes=1, mem_mb={train_mem * gpus}"
    assert re.search(rf"checkpoint train:(?:.|\n)*?resources: [^\n]*{train}", result.stdout)
    assert f"results/{config['experiment']}/report.html" in result.stdout


def test_two_config_files_are_refused(workdir):
    other = REPO / "config" / PAPER_SCALE[0]
    result = snakemake(workdir, "-n", "--configfile", "workflow_config.yaml", str(other))
    assert result.returncode != 0 and "read one config file, got 2" in result.stdout + result.stderr


# The attribute stage's scores on the run's trained checkpoints, against independent references.


@pytest.mark.slow
@pytest.mark.parametrize(("run", "step"), [("sft", 0), ("grpo", 240)])
def test_head_scores_agree_with_exact_patching(dag_run, run, step):
    """The stage's EAP-IG head scores (the DAG's own table) against brute-force patching of each
    head's output on the same 768 pairs of a trained tiny checkpoint: Pearson r >= 0.9."""
    checkpoint = dag_run / "runs" / run / f"checkpoint-{step}"
    model = load_model(checkpoint, device="cpu")
    chosen = select_pairs(read_table(dag_run / "data" / "arith_pairs.parquet", "pairs"), AttributeSettings.defaults())
    assert chosen.height >= 256
    exact = head_patching_effects(model, pair_batches(chosen, load_tokenizer(checkpoint), 64), METRICS["kl"])
    heads = read_table(dag_run / "heads" / run / str(step) / "arith.parquet", "heads").sort("layer", "head")
    r = np.corrcoef(heads["score"].to_numpy(), exact.flatten().numpy())[0, 1]
    assert r >= 0.9, f"EAP-IG vs exact patching: Pearson r = {r:.3f}"


@pytest.mark.slow
def test_eap_ig_circuits_beat_random_edges(dag_run):
    """At 5 % of the edges, the EAP-IG circuit of a trained checkpoint restores the model far better
    than the same number of randomly ranked edges (measured: 0.95 vs 0.00 on SFT step 150)."""
    checkpoint = dag_run / "runs" / "sft" / "checkpoint-150"
    model = load_model(checkpoint, device="cpu")
    chosen = select_pairs(read_table(dag_run / "data" / "arith_pairs.parquet", "pairs"), AttributeSettings.defaults())
    batches = pair_batches(chosen, load_tokenizer(checkpoint), 64)
    g = Graph.of(model.config)
    curve = read_table(dag_run / "faithfulness" / "sft" / "150" / "arith.parquet", "faithfulness")
    size = circuit_sizes(g.n_edges, [0.05])[1]
    eap = curve.filter(pl.col("n_edges") == size)["faithfulness"].item()
    torch.manual_seed(0)
    random = faithfulness_curve(model, batches, torch.rand(g.n_upstream, g.n_readers), METRICS["kl"], [0.05])
    assert eap - random.filter(pl.col("n_edges") == size)["faithfulness"].item() > 0.5


@pytest.mark.slow
def test_a_cut_input_table_fails_in_one_line(dag_run, tmp_path):
    """``sparks aggregate`` given a heads table cut to its first 2,000 bytes: exit 2 and one line
    naming the file, its table and the rule that writes it; nothing written."""
    steps = json.loads((dag_run / "runs" / "sft" / "checkpoints.json").read_text())["steps"]
    root = dag_run.parent.parent  # the folder the DAG ran in: layout's paths are relative to it
    files = {
        kind: [str(root / layout.attribution(kind, "sft", s, "arith", "embedded")) for s in steps] for kind in layout.ATTRIBUTION
    }
    cut = tmp_path / "arith.parquet"
    cut.write_bytes(Path(files["heads"][1]).read_bytes()[:2000])
    files["heads"][1] = str(cut)
    outputs = layout.CIRCUITS  # everything aggregate writes
    cmd = [sys.executable, "-m", "sparks.cli", "aggregate", "--config", str(REPO / "workflow_config.yaml"), "--task", "arith"]
    cmd += [
        "--manifest",
        str(dag_run / "runs" / "sft" / "checkpoints.json"),
        "--train-log",
        str(dag_run / "runs" / "sft" / "train_log.parquet"),
    ]
    for kind, paths in files.items():
        cmd += [f"--{kind.replace('_', '-')}", *paths]
    for name in outputs:
        cmd += [f"--{name.replace('_', '-')}-out", str(tmp_path / "out" / f"{name}.parquet")]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=root, check=False)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("sparks aggregate: error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert str(cut) in errors[0] and "heads table" in errors[0] and "rule attribute" in errors[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
