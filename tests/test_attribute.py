"""The attribute stage: graph, EAP-IG against independent references, planted circuit,
faithfulness, and the CLI writing its three tables."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
import yaml
from conftest import run_sparks, silence_heads_except

from sparks.attribute import AttributeSettings, first_of_each_difficulty, select_pairs
from sparks.attribute.batches import pair_batches
from sparks.attribute.eap import EapIg, eap_ig, rms_norm_vjp
from sparks.attribute.edgewise import run_edgewise
from sparks.attribute.exact import edge_patched_logits, head_patching_effects, reference_edge_scores
from sparks.attribute.faithfulness import circuit_sizes, faithfulness_curve, top_edges
from sparks.attribute.metrics import METRICS, Targets
from sparks.config import ConfigError, check_config, schema
from sparks.data.tasks import task_pairs
from sparks.model.graph import Graph
from sparks.model.load import load_model
from sparks.tables import read_table, with_provenance, write_table

FIXTURES = Path(__file__).parent / "fixtures"
TASK = {"source": "synthetic", "difficulties": {"easy": 1, "medium": 2}, "n_pairs": 24}


@pytest.fixture(scope="module")
def model(tiny_architecture_dir):
    """A tiny random model of each supported architecture: every test that takes it runs on each."""
    return load_model(tiny_architecture_dir, device="cpu")


@pytest.fixture(scope="module")
def pairs(tokenizer) -> pl.DataFrame:
    return task_pairs(pl.DataFrame(), TASK, seed=3, tokenizer=tokenizer).filter(~pl.col("think"))


@pytest.fixture(scope="module")
def batches(pairs, tokenizer):
    return pair_batches(pairs, tokenizer, batch_size=8)


def test_graph_of_a_gqa_model():
    g = Graph(n_layers=2, n_heads=4, n_kv_heads=2)
    assert g.n_upstream == 1 + 2 * (4 + 1)
    assert g.n_readers == 2 * (4 + 2 + 2 + 1) + 1
    assert g.upstream_names[:6] == ["input", "a0.h0", "a0.h1", "a0.h2", "a0.h3", "m0"]
    assert g.readers[:9] == [
        *[(f"a0.h{h}", "q") for h in range(4)],
        ("a0.kv0", "k"),
        ("a0.kv1", "k"),
        ("a0.kv0", "v"),
        ("a0.kv1", "v"),
        ("m0", "mlp"),
    ]
    assert [g.kv_head(h) for h in range(4)] == [0, 0, 1, 1]
    mask = g.edge_mask
    assert mask[0].all()  # the embeddings feed every reader
    assert not mask[g.head_index(0, 1), g.reader_index(0)]  # a head does not feed its own layer's heads
    assert mask[g.head_index(0, 1), g.reader_index(0) + 8]  # ... but feeds its layer's MLP
    assert not mask[g.mlp_index(0), 8] and mask[g.mlp_index(0), g.reader_index(1)]
    # layer 0: 8 attention readers x 1 + mlp x 5; layer 1: 8 x 6 + mlp x 10; logits x 11
    assert g.n_edges == 8 * 1 + 5 + 8 * 6 + 10 + 11


def test_rms_norm_vjp_matches_autograd(model):
    norm = model.model.layers[0].input_layernorm
    x = torch.randn(3, 5, model.config.hidden_size, requires_grad=True)
    grad = torch.randn(3, 5, model.config.hidden_size)
    (expected,) = torch.autograd.grad(norm(x), x, grad)
    torch.testing.assert_close(rms_norm_vjp(x.detach(), norm.weight, norm.variance_epsilon, grad), expected)


def test_edgewise_forward_is_the_model(model, batches, pairs, tokenizer):
    """The full graph is the model's own forward, on clean and corrupted prompts, padded or not
    (the corrupted run is the empty circuit of every faithfulness curve)."""
    padded = pair_batches(first_of_each_difficulty(pairs, 2), tokenizer, batch_size=4)  # two lengths: left padding
    assert len(padded) == 1 and padded[0].mask is not None
    with torch.no_grad():
        for batch in batches + padded:
            for ids in (batch.clean_ids, batch.corrupt_ids):
                expected = model(ids, use_cache=False, **batch.model_inputs()).logits[:, -1]
                run = run_edgewise(model, model.model.embed_tokens(ids), mask=batch.mask)
                torch.testing.assert_close(run.logits, expected, atol=1e-5, rtol=1e-4)
    assert run.outputs.shape[2] == Graph.of(model.config).n_upstream
    assert sum(x.shape[2] for x in run.inputs) == Graph.of(model.config).n_readers


@pytest.mark.parametrize(("metric", "steps"), [("kl", 5), ("logit_diff", 5), ("logit_diff", 1), ("logprob", 3)])
def test_eap_ig_equals_autograd_reference(model, batches, metric, steps):
    """The nnsight path (hooks + per-head norm gradients) against autograd through the edgewise
    forward, where every reader's input is its own tensor: the same numbers."""
    batch = batches[-1]
    fast = EapIg(model, METRICS[metric], steps).batch_scores(batch)
    slow = reference_edge_scores(model, batch, METRICS[metric], steps)
    scale = slow.edges.abs().max()
    assert scale > 0
    torch.testing.assert_close(fast.edges, slow.edges, atol=1e-4 * scale, rtol=1e-3)
    torch.testing.assert_close(fast.heads, slow.heads, atol=1e-4 * scale, rtol=1e-3)
    heads_only = EapIg(model, METRICS[metric], steps, edges=False).batch_scores(batch)
    assert heads_only.edges is None and heads_only.pair_edges is None
    torch.testing.assert_close(heads_only.heads, fast.heads, atol=1e-6 * scale, rtol=1e-5)  # the same head scores
    one_by_one = EapIg(model, METRICS[metric], steps, stack_steps=False)  # steps in turn, z in pieces
    graph = Graph.of(model.config)
    one_by_one.DELTA_ELEMENTS = 3 * graph.n_upstream * model.config.hidden_size  # 3 positions of one pair at a time
    assert batch.clean_ids.shape[1] > 3
    in_turn = one_by_one.batch_scores(batch)
    torch.testing.assert_close(in_turn.edges, fast.edges, atol=1e-6 * scale, rtol=1e-5)
    torch.testing.assert_close(in_turn.pair_edges, fast.pair_edges, atol=1e-6 * scale, rtol=1e-5)
    torch.testing.assert_close(in_turn.heads, fast.heads, atol=1e-6 * scale, rtol=1e-5)
    stacked_pieces = EapIg(model, METRICS[metric], steps)  # stacked steps bound the z buffer too (issue 30)
    stacked_pieces.DELTA_ELEMENTS = one_by_one.DELTA_ELEMENTS
    torch.testing.assert_close(stacked_pieces.batch_scores(batch).pair_edges, fast.pair_edges, atol=1e-6 * scale, rtol=1e-5)


def test_scores_average_over_batches(model, batches):
    whole = eap_ig(model, batches, METRICS["logit_diff"], 2)
    assert whole.pair_edges.shape == (whole.n_pairs, Graph.of(model.config).n_edges)
    torch.testing.assert_close(whole.pair_edges.mean(0), whole.edges[Graph.of(model.config).edge_mask], atol=1e-6, rtol=1e-4)
    parts = [EapIg(model, METRICS["logit_diff"], 2).batch_scores(b) for b in batches]
    assert whole.n_pairs == sum(len(b) for b in batches)
    torch.testing.assert_close(whole.edges, sum(p.edges for p in parts) / whole.n_pairs, atol=1e-6, rtol=1e-4)


def test_planted_circuit_is_recovered(tiny_model_dir, batches):
    """Zero every head's output projection except two: the answer depends on the sequence only
    through those heads, so they must rank first and every other head must score exactly 0."""
    planted = {(0, 1), (1, 2)}
    model = load_model(tiny_model_dir, device="cpu")
    silence_heads_except(model, planted)
    scores = eap_ig(model, batches, METRICS["logit_diff"], 5)
    top = torch.topk(scores.heads.abs().flatten(), len(planted)).indices
    n_heads = model.config.num_attention_heads
    assert {divmod(int(i), n_heads) for i in top} == planted
    others = [scores.heads[layer, head] for layer in range(2) for head in range(n_heads) if (layer, head) not in planted]
    assert torch.stack(others).abs().max() == 0
    g = Graph.of(model.config)
    for layer, head in {(layer, h) for layer in range(2) for h in range(n_heads)} - planted:
        assert scores.edges[g.head_index(layer, head)].abs().max() == 0  # nothing flows out of them
    exact = head_patching_effects(model, batches, METRICS["logit_diff"])
    assert {divmod(int(i), n_heads) for i in torch.topk(exact.abs().flatten(), 2).indices} == planted


def test_faithfulness_of_full_and_empty_circuits(model, batches):
    scores = eap_ig(model, batches, METRICS["logit_diff"], 3)
    curve = faithfulness_curve(model, batches, scores.edges, METRICS["logit_diff"], [0.1, 0.5])
    g = Graph.of(model.config)
    assert (
        curve["n_edges"].to_list()
        == circuit_sizes(g.n_edges, [0.1, 0.5])
        == [0, round(0.1 * g.n_edges), round(0.5 * g.n_edges), g.n_edges]
    )
    # the empty circuit is the corrupted run and the full graph the model, to float precision
    scale = max(abs(curve["metric_model"][0]), abs(curve["metric_corrupt"][0]))
    with torch.no_grad():  # ... the model's own corrupted run, not the edgewise forward's
        corrupt = []
        for batch in batches:
            clean = model(batch.clean_ids, use_cache=False, **batch.model_inputs()).logits[:, -1]
            logits = model(batch.corrupt_ids, use_cache=False, **batch.model_inputs()).logits[:, -1]
            corrupt.append(METRICS["logit_diff"](logits, Targets(clean, batch.clean_answer, batch.corrupt_answer)))
    assert curve["metric_corrupt"][0] == pytest.approx(torch.cat(corrupt).mean().item(), abs=1e-5 * scale)
    assert curve["metric_circuit"][0] == pytest.approx(curve["metric_corrupt"][0], abs=1e-5 * scale)
    assert curve["metric_circuit"][-1] == pytest.approx(curve["metric_model"][0], abs=1e-5 * scale)
    gap = abs(curve["metric_model"][0] - curve["metric_corrupt"][0])
    assert gap > 1e-3 * scale  # else faithfulness would be a ratio of rounding errors
    assert curve["faithfulness"][0] == pytest.approx(0.0, abs=1e-5 * scale / gap)
    assert curve["faithfulness"][-1] == pytest.approx(1.0, abs=1e-5 * scale / gap)
    assert 0 <= curve["cmd"][0] and curve["cpr"][0] + curve["cmd"][0] >= 1 - 1e-6  # |1 - f| >= 1 - f


def test_patched_circuits_run_together_as_they_run_alone(model, batches):
    """The faithfulness engine: several circuits stacked in one pass give each circuit's own
    logits; the empty circuit is the corrupted run and the full graph the model's forward."""
    g = Graph.of(model.config)
    batch = batches[0]
    embed = model.model.embed_tokens
    with torch.no_grad():
        corrupt = run_edgewise(model, embed(batch.corrupt_ids))
        clean = model(batch.clean_ids, use_cache=False).logits[:, -1]
        torch.manual_seed(0)
        some = top_edges(g, torch.randn(g.n_upstream, g.n_readers), g.n_edges // 3)
        masks = torch.stack([torch.zeros_like(some), g.edge_mask.clone(), some])  # [3, U, R]
        b = len(batch)
        stacked = run_edgewise(model, embed(batch.clean_ids).repeat(3, 1, 1), masks, corrupt.outputs, record_inputs=False)
        alone = run_edgewise(model, embed(batch.clean_ids), some, corrupt.outputs)
    torch.testing.assert_close(stacked.logits[:b], corrupt.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(stacked.logits[b : 2 * b], clean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(stacked.logits[2 * b :], alone.logits, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(alone.logits, clean, atol=1e-3) and stacked.inputs == []


def test_patched_runs_skip_only_nodes_no_kept_edge_can_change(model, batches):
    """The faithfulness engine skips, per circuit, every node that no kept edge from a changed
    node reaches. Its logits equal the definition (each reader's input summed edge by edge, every
    node computed) for nested circuits in order of size (as the curve runs them), for circuits out
    of order with a gap of unchanged ones, and for a circuit whose one edge leaves a node it never
    changes (which is then the corrupted run), with and without left padding."""
    g = Graph.of(model.config)
    batch = batches[0]
    embed = model.model.embed_tokens
    torch.manual_seed(1)
    scores = torch.randn(g.n_upstream, g.n_readers)
    nested = [top_edges(g, scores, n) for n in (1, 3, 10, g.n_edges // 4)]
    unchanged = torch.zeros(g.n_upstream, g.n_readers, dtype=torch.bool)
    unchanged[g.head_index(1, 0), -1] = True  # a head of the last layer into the logits, nothing into the head
    padding = torch.ones_like(batch.clean_ids)
    padding[0, :2] = 0
    with torch.no_grad():
        clean = embed(batch.clean_ids)
        for mask in (None, padding):
            corrupt = run_edgewise(model, embed(batch.corrupt_ids), mask=mask)
            for stack in (nested, [nested[-1], unchanged, nested[0]]):
                masks = torch.stack(stack)
                repeated = None if mask is None else mask.repeat(len(stack), 1)
                run = run_edgewise(
                    model, clean.repeat(len(stack), 1, 1), masks, corrupt.outputs, record_inputs=False, mask=repeated
                )
                expected = torch.cat([edge_patched_logits(model, clean, keep, corrupt.outputs, mask) for keep in stack])
                torch.testing.assert_close(run.logits, expected, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(run.logits[len(batch) : 2 * len(batch)], corrupt.logits, atol=1e-6, rtol=1e-6)


def test_heads_alone_skip_the_edges(tiny_model_dir, pairs):
    from sparks.attribute import score_checkpoint

    settings = AttributeSettings.defaults(max_pairs=6, batch_size=8)
    both = score_checkpoint(tiny_model_dir, pairs, settings, tables=("heads", "edges"))
    alone = score_checkpoint(tiny_model_dir, pairs, settings, tables=("heads",))
    assert list(alone) == ["heads"] and alone["heads"]["score_q"].null_count() == alone["heads"].height
    np.testing.assert_allclose(alone["heads"]["score"], both["heads"]["score"], rtol=1e-5, atol=1e-7)
    assert alone["heads"]["rank"].to_list() == both["heads"]["rank"].to_list()


def test_unsupported_architectures_are_refused_before_a_job_and_at_load(tmp_path, tokenizer, raw_config, pairs):
    """A GPT-2 folder as the base or a models run's checkpoint fails the config check, and fails
    the attribute stage at load time, naming the model, its model_type and the supported ones;
    so does sliding-window attention, which the attribution graph does not rebuild either."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from sparks.attribute import score_checkpoint
    from sparks.sources import SUPPORTED_MODEL_TYPES, ModelError, check_model_type

    gpt2 = tmp_path / "gpt2"
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=64, n_embd=16, n_layer=1, n_head=2, bos_token_id=None, eos_token_id=None
    )
    GPT2LMHeadModel(config).save_pretrained(gpt2)
    tokenizer.save_pretrained(gpt2)
    supported = "model_type 'gpt2' is not supported; sparks attributes qwen2, qwen3, llama models"
    assert SUPPORTED_MODEL_TYPES == ("qwen2", "qwen3", "llama")
    base = {**raw_config, "base": {**raw_config["base"], "source": str(gpt2)}}
    with pytest.raises(ConfigError, match=re.escape(f"config key base.source = '{gpt2}' in the config: {supported}")):
        check_config(base)
    given = {**raw_config, "runs": {"given": {"method": "models", "checkpoints": [{"step": 0, "source": str(gpt2)}]}}}
    with pytest.raises(ConfigError, match=re.escape(f"runs.given.checkpoints: checkpoint {gpt2} (step 0): {supported}")):
        check_config(given)
    with pytest.raises(ModelError, match=re.escape(f"model '{gpt2}' (checkpoint {gpt2}): {supported}")):
        score_checkpoint(gpt2, pairs, AttributeSettings.defaults(max_pairs=2))
    with pytest.raises(ValueError, match="sliding-window attention"):
        check_model_type({"model_type": "qwen2", "use_sliding_window": True}, "a model")
    for model_type in SUPPORTED_MODEL_TYPES:
        check_model_type({"model_type": model_type, "use_sliding_window": False}, "a model")


def test_top_edges_mask():
    g = Graph(n_layers=1, n_heads=2, n_kv_heads=1)
    scores = torch.zeros(g.n_upstream, g.n_readers)
    scores[0, 0], scores[1, g.n_readers - 1], scores[1, 0] = -3.0, 2.0, 99.0  # [1, 0] is no edge
    keep = top_edges(g, scores, 2)
    assert keep.sum() == 2 and keep[0, 0] and keep[1, -1] and not keep[1, 0]


def test_pair_batches_fill_whole_batches_by_length_and_pad_the_rest(pairs, tokenizer):
    batches = pair_batches(pairs, tokenizer, batch_size=5)
    assert sorted(torch.cat([b.rows for b in batches]).tolist()) == list(range(pairs.height))
    lengths = pairs["n_tokens"].to_list()
    for batch in batches:
        assert batch.clean_ids.shape == batch.corrupt_ids.shape and len(batch) <= 5
        assert (batch.clean_answer != batch.corrupt_answer).all()
        own = [lengths[r] for r in batch.rows.tolist()]
        if batch.mask is None:  # one length: no padding
            assert len(set(own)) == 1
        else:  # left padding: the answer position stays the last one
            assert batch.mask.sum(1).tolist() == own and batch.mask[:, -1].all()
            assert (batch.clean_ids[batch.mask == 0] == tokenizer.pad_token_id).all()
    rest = sum(n % 5 for n in pairs["n_tokens"].value_counts()["count"])  # each length's partial batch
    assert sum(b.mask is not None for b in batches) <= -(-rest // 5)


def test_padded_batches_of_real_gsm8k_pairs_score_as_each_pair_alone(qwen25_tokenizer, tmp_path):
    """Hub pairs differ in length: a batch of 4 GSM8K pairs runs as one padded forward, and its
    edge, head and per-pair scores and faithfulness curve equal those of each pair run alone."""
    from sparks.data.hub import load_hub_problems
    from sparks.data.prompting import Prompter, PromptSettings
    from sparks.model.tiny import TinyShape, build_tiny_qwen2

    for name in ("train.jsonl", "test.jsonl"):
        shutil.copy(FIXTURES / "gsm8k" / name, tmp_path / name)
    problems = load_hub_problems("gsm8k", str(tmp_path), None, n_train=12, n_eval=1)
    prompter = Prompter(qwen25_tokenizer, PromptSettings.defaults(system=None))
    task = {"source": "gsm8k", "n_pairs": 4, "max_pair_tokens": 1024}
    gsm8k = task_pairs(problems, task, 0, qwen25_tokenizer, prompter).filter(~pl.col("think"))
    assert gsm8k["n_tokens"].n_unique() == 4
    torch.manual_seed(0)
    model = build_tiny_qwen2(
        TinyShape.defaults(hidden_size=32, n_layers=2, n_heads=4, n_kv_heads=2, intermediate_size=64), qwen25_tokenizer
    )
    with torch.no_grad():  # weights far from init: a random model near init barely tells the pairs apart
        for weight in model.parameters():
            if weight.dim() == 2:
                weight.normal_(0, 0.5)
    model.eval()
    padded, alone = pair_batches(gsm8k, qwen25_tokenizer, 4), pair_batches(gsm8k, qwen25_tokenizer, 1)
    assert len(padded) == 1 and padded[0].mask is not None and all(b.mask is None for b in alone)
    kl = METRICS["kl"]
    together, apart = eap_ig(model, padded, kl, ig_steps=3), eap_ig(model, alone, kl, ig_steps=3)
    by_pair = padded[0].rows.argsort(), torch.cat([b.rows for b in alone]).argsort()  # pair_edges come in batch order
    assert torch.allclose(together.heads, apart.heads, atol=1e-6, rtol=1e-4)
    assert torch.allclose(together.edges, apart.edges, atol=1e-6, rtol=1e-4)
    assert torch.allclose(together.pair_edges[by_pair[0]], apart.pair_edges[by_pair[1]], atol=1e-6, rtol=1e-4)
    assert together.edges.abs().sum() > 0
    curve = faithfulness_curve(model, padded, together.edges, kl, (0.1, 0.5))
    reference = faithfulness_curve(model, alone, together.edges, kl, (0.1, 0.5))
    assert curve["metric_corrupt"][0] > 1e-3  # the pairs do differ, so the curve is not float noise
    assert np.allclose(curve["faithfulness"], reference["faithfulness"], atol=1e-4)


def test_pair_of_unequal_length_is_refused(pairs, tokenizer):
    broken = pairs.head(2).with_columns(pl.col("corrupt") + "1")
    with pytest.raises(ValueError, match="tokenize to .* remake the pairs"):
        pair_batches(broken, tokenizer, 4)


def test_select_pairs(pairs):
    chosen = select_pairs(pairs, AttributeSettings.defaults(difficulties=("medium",), max_pairs=5))
    assert chosen["difficulty"].unique().to_list() == ["medium"] and chosen.height == 5
    with pytest.raises(ValueError, match="attribute.think"):
        select_pairs(pairs, AttributeSettings.defaults(think=True))


def test_logit_diff_needs_corrupted_answers(pairs, tokenizer, model):
    hub_like = pairs.head(4).with_columns(pl.lit(None, pl.String).alias("corrupt_answer"))
    with pytest.raises(ValueError, match="use attribute.metric: kl or logprob"):
        eap_ig(model, pair_batches(hub_like, tokenizer, 4), METRICS["logit_diff"], 2)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"ig_steps": 1}, "KL gradient is exactly zero"),
        ({"ig_steps": 0}, "attribute.ig_steps"),
        ({"difficulties": ["expert"]}, "attribute.difficulties names 'expert'"),
        ({"metric": "l2"}, "attribute.metric"),
        ({"faithfulness_fractions": [0.0]}, "attribute.faithfulness_fractions"),
    ],
)
def test_bad_attribute_config(raw_config, section, message):
    raw_config["attribute"] = section
    with pytest.raises(ConfigError, match=message):
        check_config(raw_config)


def test_settings_defaults_and_metric_names_match_the_schema():
    from sparks.registry import METRICS as METRIC_NAMES

    section = schema()["properties"]["attribute"]["properties"]
    assert list(METRIC_NAMES) == list(METRICS)
    defaults = AttributeSettings.defaults()
    for key, spec in section.items():
        value = getattr(defaults, key)
        expected = {k: v["default"] for k, v in spec["properties"].items()} if "properties" in spec else spec["default"]
        assert (list(value) if isinstance(value, tuple) else value) == expected, key


def test_cli_writes_three_tables(tmp_path, tiny_model_dir, raw_config, pairs):
    run_dir = tmp_path / "runs" / "sft"
    shutil.copytree(tiny_model_dir, run_dir / "checkpoint-0")
    manifest = {"run": "sft", "method": "sft", "steps": [0], "checkpoints": {"0": "checkpoint-0"}, "model_hashes": {"0": "h0"}}
    (run_dir / "checkpoints.json").write_text(json.dumps(manifest))
    pairs_path = tmp_path / "arith_pairs.parquet"
    write_table(
        with_provenance(pairs, experiment="embedded", run=None, step=None, task="arith", model_hash=None, config_hash="x"),
        "pairs",
        pairs_path,
    )
    raw_config["attribute"] = {"batch_size": 16, "max_pairs": 10, "faithfulness_fractions": [0.2]}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw_config))
    out = {name: tmp_path / "out" / f"{name}.parquet" for name in ("heads", "edges", "pair_edges", "faithfulness")}
    args = ["attribute", "--config", str(config), "--manifest", str(run_dir / "checkpoints.json"), "--step", "0"]
    args += ["--task", "arith", "--pairs", str(pairs_path)]
    args += [x for name, path in out.items() for x in (f"--{name.replace('_', '-')}-out", str(path))]
    result = run_sparks(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    heads = read_table(out["heads"], "heads")
    assert heads.height == 2 * 4 and sorted(heads["rank"].to_list()) == list(range(1, 9))
    assert (heads["kv_head"] == heads["head"] // 2).all()
    np.testing.assert_allclose(heads["score"], heads["score_out"], atol=1e-5)  # a head's score = its outgoing edges
    edges = read_table(out["edges"], "edges")
    assert edges.height == Graph(2, 4, 2).n_edges
    assert set(edges["dst_input"]) == {"q", "k", "v", "mlp", "logits"}
    per_pair = read_table(out["pair_edges"], "pair_edges")
    assert per_pair.height == 20 and per_pair["difficulty"].value_counts()["count"].to_list() == [10, 10]
    mean = np.stack(per_pair["scores"].to_numpy()).mean(0)
    np.testing.assert_allclose(mean, edges["score"].to_numpy(), atol=1e-5)  # both in graph order
    curve = read_table(out["faithfulness"], "faithfulness")
    assert curve["faithfulness"][-1] == pytest.approx(1.0, abs=1e-4)
    assert (heads["step"] == 0).all() and (heads["run"] == "sft").all() and (heads["model_hash"] == "h0").all()

    missing = run_sparks(*[a if a != "0" else "7" for a in args])
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1].startswith("sparks attribute: error: step 7 is not in")
