"""Exact per-head effects (sparks.attribute.patching) against a brute-force loop, and the head
effects table the attribute stage writes."""

from __future__ import annotations

import polars as pl
import pytest
import torch

from sparks.attribute import AttributeSettings, effects_table
from sparks.attribute.batches import pair_batches
from sparks.attribute.exact import head_patching_effects
from sparks.attribute.metrics import METRICS
from sparks.attribute.patching import head_effects
from sparks.data.tasks import task_pairs
from sparks.model.graph import Graph
from sparks.model.load import load_model

TASK = {"source": "synthetic", "difficulties": {"easy": 1, "medium": 2, "hard": 3}, "n_pairs": 7}


@pytest.fixture(scope="module")
def model(tiny_architecture_dir):
    """A tiny model of each supported architecture in float64 (so 1e-6 is a test of the code, not
    of float32 rounding), with weights far from init, so that heads matter (effects well above 1e-6)."""
    model = load_model(tiny_architecture_dir, device="cpu").double()
    torch.manual_seed(0)
    with torch.no_grad():
        for weight in model.parameters():
            if weight.dim() == 2:
                weight.normal_(0, 0.5)
    return model


@pytest.fixture(scope="module")
def pairs(tokenizer) -> pl.DataFrame:
    return task_pairs(pl.DataFrame(), TASK, seed=5, tokenizer=tokenizer).filter(~pl.col("think"))


@pytest.mark.parametrize("metric", ["kl", "logit_diff"])
def test_stacked_effects_equal_one_forward_per_head_and_pair(model, pairs, tokenizer, metric):
    """Padded batches of mixed lengths, grouped-query attention (4 heads, 2 KV heads): every pair's
    effect of every head equals the brute-force loop run on that pair alone."""
    batches = pair_batches(pairs, tokenizer, batch_size=5)
    assert any(b.mask is not None for b in batches), "the test needs a padded batch"
    fast = head_effects(model, batches, METRICS[metric])  # [pairs, layers, heads], batch order
    order = torch.cat([b.rows for b in batches])
    alone = pair_batches(pairs, tokenizer, batch_size=1)
    assert all(b.mask is None for b in alone)
    for batch in alone:
        expected = head_patching_effects(model, [batch], METRICS[metric])  # [layers, heads]
        row = int((order == batch.rows[0]).nonzero())
        torch.testing.assert_close(fast[row], expected, atol=1e-6, rtol=0)
    assert fast.abs().max() > 0.05  # the heads matter: not a comparison of numbers below the tolerance


def test_effects_table_rows_and_subsample(model, pairs, tokenizer):
    graph = Graph.of(model.config)
    settings = AttributeSettings.defaults(exact="on", exact_pairs=2, batch_size=4)  # 2 pairs of each of 3 difficulties
    table = effects_table(model, tokenizer, pairs, settings, METRICS["kl"], graph)
    assert table.height == 6 * graph.n_layers * graph.n_heads
    chosen = pairs.sort("difficulty", "pair_id").group_by("difficulty", maintain_order=True).head(2)
    assert chosen["difficulty"].value_counts()["count"].to_list() == [2, 2, 2]  # every difficulty, not the first one's
    assert set(table.select("difficulty", "pair_id").unique().rows()) == set(chosen.select("difficulty", "pair_id").rows())
    one = chosen.head(1)
    expected = head_patching_effects(model, pair_batches(one, tokenizer, 1), METRICS["kl"])
    got = table.filter((pl.col("difficulty") == one["difficulty"][0]) & (pl.col("pair_id") == one["pair_id"][0])).sort(
        "layer", "head"
    )
    torch.testing.assert_close(
        torch.tensor(got["effect"].to_numpy()).view(graph.n_layers, graph.n_heads), expected, atol=1e-6, rtol=0
    )
    off = effects_table(model, tokenizer, pairs, AttributeSettings.defaults(exact="off"), METRICS["kl"], graph)
    assert off.is_empty() and off.columns == table.columns
