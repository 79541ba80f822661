"""A tiny model whose answer runs through one head by construction, then through a second one:
EAP-IG and exact patching both rank the necessary head first, and the emergence test calls the
head whose weights changed, not the one left alone (attribute stage to aggregate stage)."""

from __future__ import annotations

import polars as pl
import pytest
import torch
from conftest import silence_heads_except

from sparks.aggregate import AggregateSettings, aggregate_run
from sparks.attribute import AttributeSettings, score_checkpoint
from sparks.data.tasks import task_pairs
from sparks.model.load import load_model, load_tokenizer
from sparks.tables import with_provenance, write_table

LIVE_BASE = {(0, 1)}  # the only head whose output reaches the residual stream at step 0
LIVE_LATER = {(0, 1), (1, 2)}  # ... and at step 10: a1.h2's output projection is switched on
TASK = {"source": "synthetic", "difficulties": {"easy": 1, "medium": 2}, "n_pairs": 24}


@pytest.fixture(scope="module")
def checkpoints(tiny_model_dir, tmp_path_factory):
    """checkpoint-0 and checkpoint-10 folders: the same weights but a1.h2's o_proj columns (zero, then
    three times their random values, so that the head clearly matters)."""
    root = tmp_path_factory.mktemp("planted")
    torch.manual_seed(0)
    model = load_model(tiny_model_dir, device="cpu")
    with torch.no_grad():  # far from init, so that the live heads matter
        for weight in model.parameters():
            if weight.dim() == 2:
                weight.normal_(0, 0.5)
    tokenizer = load_tokenizer(tiny_model_dir)
    kept = model.model.layers[1].self_attn.o_proj.weight.detach().clone()
    dh = model.config.hidden_size // model.config.num_attention_heads
    kept[:, 2 * dh : 3 * dh] *= 3
    for step, live in ((0, LIVE_BASE), (10, LIVE_LATER)):
        with torch.no_grad():
            model.model.layers[1].self_attn.o_proj.weight.copy_(kept)
        silence_heads_except(model, live)
        model.save_pretrained(root / f"checkpoint-{step}")
        tokenizer.save_pretrained(root / f"checkpoint-{step}")
    return root


def test_the_call_moves_with_the_changed_head(checkpoints, tokenizer, tmp_path):
    pairs = task_pairs(pl.DataFrame(), TASK, seed=1, tokenizer=tokenizer).filter(~pl.col("think"))
    settings = AttributeSettings.defaults(exact="on", batch_size=8, faithfulness_fractions=(0.05, 0.2))
    files: dict[str, list] = {}
    for step in (0, 10):
        tables = score_checkpoint(checkpoints / f"checkpoint-{step}", pairs, settings, base=checkpoints / "checkpoint-0")
        if step == 0:  # both detectors put the one necessary head first
            heads = tables["heads"].sort("rank")
            assert (heads["layer"][0], heads["head"][0]) == (0, 1)
            exact = tables["head_effects"].group_by("layer", "head").agg(pl.col("effect").abs().mean()).sort("effect")
            assert (exact["layer"][-1], exact["head"][-1]) == (0, 1)
        else:  # only a1.h2's own weights moved
            moved = tables["heads"].filter(pl.col("weight_change") > 0).select("layer", "head").rows()
            assert moved == [(1, 2)]
        for name, table in tables.items():
            path = tmp_path / f"{name}-{step}.parquet"
            provenance = dict(experiment="t", run="planted", step=step, task="arith", model_hash=str(step), config_hash="c")
            write_table(with_provenance(table, **provenance), name, path)
            files.setdefault(name, []).append(path)
    out = aggregate_run(files, [0, 10], AggregateSettings.defaults(top_n=8, bootstrap=50), planted=["a1.h2"])
    cohorts = {(r["layer"], r["head"]): r["status"] for r in out["cohorts"].iter_rows(named=True)}
    assert cohorts[1, 2] == "emergent" and cohorts[0, 1] == "maintained"
    assert [k for k, status in cohorts.items() if status in ("emergent", "transient")] == [(1, 2)]
    called = out["stability"].filter(pl.col("called"))
    assert called.select("step", "layer", "head").rows() == [(10, 1, 2)]
    assert called["change_low"][0] > 0  # its exact effect rose
    planted = {r["detector"]: (r["precision"], r["recall"]) for r in out["planted"].iter_rows(named=True)}
    assert planted == {"emergence_test": (1.0, 1.0), "exact_change": (1.0, 1.0), "weight_change": (1.0, 1.0)}
    assert set(out["circuit_rules"]["rule"]) == {"top_n", "faithfulness"}
