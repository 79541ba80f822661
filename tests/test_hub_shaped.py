"""The hub path end to end on CPU: config/hub_shaped_cpu.yaml on real GSM8K rows, Qwen2.5's real
vocabulary and chat template (built offline), and a tiny random-initialised Qwen2. Every stage
runs; the outputs are noise, the paths are the ones a Qwen2.5-Math run takes."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest
from conftest import REPO, snakemake

from sparks.data.answers import parse_reference

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def hub_run(tmp_path_factory, qwen25_tokenizer_dir) -> Path:
    workdir = tmp_path_factory.mktemp("hub_shaped")
    shutil.copytree(qwen25_tokenizer_dir, workdir / "tokenizer")
    (workdir / "gsm8k").mkdir()
    for name in ("train.jsonl", "test.jsonl"):
        shutil.copy(FIXTURES / "gsm8k" / name, workdir / "gsm8k" / name)
    result = snakemake(workdir, "--configfile", str(REPO / "config" / "hub_shaped_cpu.yaml"), "--cores", "2")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return workdir / "results" / "hub_shaped_cpu"


@pytest.mark.slow
def test_every_stage_runs_on_real_rows_with_a_real_tokenizer(hub_run):
    assert (hub_run / "report.html").stat().st_size > 0
    problems = pl.read_parquet(hub_run / "data" / "gsm8k_problems.parquet")
    assert problems.height == 28 and all(parse_reference(a) for a in problems["answer"])
    assert problems["question"][0].startswith("Natalia sold clips")  # the first real GSM8K training row

    pairs = pl.read_parquet(hub_run / "data" / "gsm8k_pairs.parquet")
    assert pairs.height == 8  # 4 per think mode
    assert all(c.startswith("<|im_start|>system\n") and c.endswith("$\\boxed{") for c in pairs["clean"])

    for run in ("sft", "grpo"):
        heads = pl.read_parquet(hub_run / "heads" / run / "2" / "gsm8k.parquet")
        assert heads.height == 2 * 4 and heads["score"].is_finite().all()
        samples = pl.read_parquet(hub_run / "bench" / run / "eval" / "2" / "gsm8k.parquet")
        assert samples.height == 4 * 2 and samples["completion"].str.len_chars().min() > 0
    log = pl.read_parquet(hub_run / "runs" / "grpo" / "train_log.parquet")
    assert {"reward_correctness", "reward_format"} <= set(log.columns)  # the hub checker's rewards were called
    assert (hub_run / "bench" / "sft" / "interventions" / "gsm8k.parquet").exists()


@pytest.mark.slow
def test_style_pairs_on_the_hub_path(hub_run):
    """sft's checkpoints also scored on style-contrast pairs (attribute.compare_pairs): each model's
    sampled opening after Qwen2.5's chat template, cut to one token length, scored by the attribute
    stage, and the emergence calls of both kinds of pairs compared head by head."""
    from sparks import layout
    from sparks.tables import read_table

    workdir = hub_run.parent.parent
    pairs = read_table(workdir / layout.style_pairs("sft", "gsm8k", "hub_shaped_cpu"), "pairs")
    assert pairs.height > 0 and set(pairs["kind"]) == {"style"}
    turn = "<|im_start|>assistant\n"
    for clean, corrupt, clean_opening, corrupt_opening in pairs.select(
        "clean", "corrupt", "clean_opening", "corrupt_opening"
    ).rows():
        prompt = clean[: clean.index(turn) + len(turn)]  # the templated prompt both openings continue
        assert prompt.startswith("<|im_start|>system\n") and corrupt.startswith(prompt)
        assert clean_opening.startswith(clean[len(prompt) :]) and corrupt_opening.startswith(corrupt[len(prompt) :])
    assert (pairs["clean"] != pairs["corrupt"]).all() and pairs["opening_tokens"].is_between(1, 6).all()
    for step in (0, 2):
        heads = read_table(workdir / layout.style_attribution("heads", "sft", step, "gsm8k", "hub_shaped_cpu"), "heads")
        assert heads.height == 2 * 4 and heads["score"].is_finite().all()
    kinds = read_table(workdir / layout.circuits("pair_kinds", "sft", "gsm8k", "hub_shaped_cpu"), "pair_kinds")
    assert kinds["agree"].to_list() == (kinds["called_operand"] == kinds["called_style"]).to_list()
