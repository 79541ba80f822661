"""A run of checkpoints trained elsewhere, through the whole DAG: the shared embedded run's base and
SFT checkpoints copied out of it, one run given as a Trainer's checkpoint-N tree, one as a list of
plain model folders. Scheduled after the full-size DAG, which it reads (conftest's dag_run)."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest
import yaml
from conftest import REPO, snakemake

from sparks.manifest import read_manifest
from sparks.tables import read_table

SPARKS_FILES = ("sparks_model.json", "accuracy.parquet", "trainer_state.json", "training_args.bin")


def plain_copy(source: Path, target: Path) -> Path:
    """A model folder as save_pretrained leaves it, without anything sparks or a trainer added."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(*SPARKS_FILES))
    return target


@pytest.mark.slow
def test_checkpoints_from_elsewhere_run_through_every_stage(dag_run, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    tree = elsewhere / "sft-run"
    for step in (0, 60, 150):
        shutil.copytree(dag_run / "runs" / "sft" / f"checkpoint-{step}", tree / f"checkpoint-{step}")
    base = plain_copy(dag_run / "base", elsewhere / "base")
    final = plain_copy(dag_run / "runs" / "sft" / "checkpoint-150", elsewhere / "released")
    raw = yaml.safe_load((REPO / "workflow_config.yaml").read_text())
    raw.update(experiment="given", base={"source": str(base)})
    raw.pop("teacher")
    raw["tasks"]["arith"].update(n_train=16, n_eval=6, n_pairs=8)
    raw["runs"] = {
        "tree": {"method": "models", "checkpoints": str(tree)},
        "listed": {"method": "models", "checkpoints": [{"step": 0, "source": str(base)}, {"step": 150, "source": str(final)}]},
    }
    raw["evaluate"] = {"n_samples": 2, "k": [1, 2], "alphas": [0.5], "random_seeds": 1}
    raw["aggregate"] = {"bootstrap": 5}
    work = tmp_path / "work"
    work.mkdir()
    (work / "given.yaml").write_text(yaml.safe_dump(raw))

    missing = dict(raw, runs={"tree": {"method": "models", "checkpoints": str(elsewhere / "nowhere")}})
    (work / "missing.yaml").write_text(yaml.safe_dump(missing))
    refused = snakemake(work, "-n", "--configfile", str(work / "missing.yaml"))
    assert refused.returncode != 0 and f"{elsewhere / 'nowhere'}': no such folder" in refused.stdout + refused.stderr

    result = snakemake(
        work, "--profile", str(REPO / "profiles" / "local"), "--cores", "2", "--configfile", str(work / "given.yaml")
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    results = work / "results" / "given"
    assert (results / "base" / "accuracy.parquet").is_file() and not (results / "teacher").exists()  # nothing trained
    trained = read_manifest(dag_run / "runs" / "sft" / "checkpoints.json")
    runs = {name: read_manifest(results / "runs" / name / "checkpoints.json") for name in ("tree", "listed")}
    assert runs["tree"].steps == (0, 60, 150) and runs["listed"].steps == (0, 150)
    for manifest in runs.values():  # the weights' hashes, the same as where they were trained
        assert all(manifest.model_hash(s) == trained.model_hash(s) for s in manifest.steps)
        for step in manifest.steps:
            heads = read_table(results / "heads" / manifest.run / str(step) / "arith.parquet", "heads")
            assert heads.height == 32 and heads["model_hash"].unique().to_list() == [trained.model_hash(step)]
            assert (results / "bench" / manifest.run / "passk" / str(step) / "arith.parquet").is_file()
        assert read_table(results / "circuits" / manifest.run / "arith" / "cohorts.parquet", "cohorts").height > 0
    assert read_table(results / "runs" / "tree" / "train_log.parquet", "train_log")["step"].max() == 150  # trainer_state.json
    assert read_table(results / "runs" / "listed" / "train_log.parquet", "train_log").height == 0
    report = (results / "report.html").read_text()
    assert "tree" in report and "listed" in report

    # The heads only the think-off circuit uses, ablated and scaled with thinking off (the study's Table 2).
    table2 = dict(raw, evaluate={**raw["evaluate"], "heads": "think_off_only", "think": False})
    (work / "table2.yaml").write_text(yaml.safe_dump(table2))
    target = "results/given/bench/listed/interventions/arith.parquet"
    intervened = snakemake(work, target, "--profile", str(REPO / "profiles" / "local"), "--configfile", str(work / "table2.yaml"))
    assert intervened.returncode == 0, intervened.stdout[-3000:] + intervened.stderr[-5000:]
    modes = read_table(results / "circuits" / "listed" / "arith" / "think_modes.parquet", "think_modes")
    last = modes.filter((pl.col("step") == modes["step"].max()) & (pl.col("mode") == "think_off_only"))
    expected = " ".join(f"a{layer}.h{head}" for layer, head in last.select("layer", "head").sort("layer", "head").rows())
    table = read_table(results / "bench" / "listed" / "interventions" / "arith.parquet", "interventions")
    assert "emergent" not in set(table["heads_from"])
    assert set(table.filter(pl.col("heads_from") == "think_off_only")["heads"]) == ({expected} if expected else set())
    samples = read_table(results / "bench" / "listed" / "interventions" / "arith_samples.parquet", "intervention_samples")
    # Every condition sampled (a model may still write "<think>" after the pre-filled empty trace:
    # which prompt thinking off builds is tests/test_prompting.py's).
    assert samples.height > 0 and set(samples["heads_from"]) == set(table["heads_from"])

    # The same checkpoints on style-contrast pairs, a config switch: the listed run's two models'
    # openings, and its circuits scored on them.
    raw["attribute"] = {"pairs": "style", "think": True, "compare_think_at": "none", "style": {"opening_tokens": 12}}
    (work / "style.yaml").write_text(yaml.safe_dump(raw))
    heads = [f"results/given/heads/listed/{step}/arith.parquet" for step in (0, 150)]
    styled = snakemake(work, *heads, "--profile", str(REPO / "profiles" / "local"), "--configfile", str(work / "style.yaml"))
    assert styled.returncode == 0, styled.stdout[-3000:] + styled.stderr[-5000:]
    pairs = read_table(results / "data" / "style" / "listed" / "arith.parquet", "pairs")
    assert pairs.height > 0 and set(pairs["kind"]) == {"style"} and pairs["think"].all()
    assert (pairs["clean"] != pairs["corrupt"]).all() and pairs["opening_tokens"].is_between(1, 12).all()
    for step in (0, 150):
        table = read_table(results / "heads" / "listed" / str(step) / "arith.parquet", "heads")
        assert table["score"].abs().sum() > 0
