"""Measured over estimated peak memory (sparks.memory) for training, generation, EAP-IG and the
faithfulness pass, on the tiny embedded shape and a Qwen2.5-0.5B shape (random weights) at
short lengths.

The measurement is the model's weights plus torch's own allocation record of the job
(``torch.profiler`` with ``profile_memory``: every tensor allocated and freed inside it, summed in
time order; on a GPU ``torch.cuda.max_memory_allocated``), so Python's and the libraries' own memory do not count,
as they do not count on a GPU card either. The jobs are the ones sparks runs: a training step is
forward, backward and fused AdamW (transformers' default optimizer) of a causal-LM loss over the
batch, twice (the second step holds the optimizer state); generation is ``model.generate``
sampling every row to its token limit; EAP-IG and the faithfulness curve are sparks' own functions.
    python benchmarks/memory_estimate.py [--shapes tiny,0.5b] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import gc

import torch
from torch.profiler import ProfilerActivity, profile
from transformers import Qwen2Config, Qwen2ForCausalLM

from sparks import memory
from sparks.attribute.batches import PairBatch
from sparks.attribute.eap import eap_ig
from sparks.attribute.faithfulness import faithfulness_curve
from sparks.attribute.metrics import metric
from sparks.model.graph import Graph

SHAPES = {  # config.json fields
    "tiny": {"hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 2, "intermediate_size": 256,
                 "vocab_size": 64, "max_position_embeddings": 128, "tie_word_embeddings": True},
    "0.5b": {"hidden_size": 896, "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2, "intermediate_size": 4864,
                 "vocab_size": 151936, "max_position_embeddings": 32768, "tie_word_embeddings": True},
}  # fmt: skip
FRACTIONS = (0.01, 0.05, 0.1, 0.5)  # faithfulness-curve circuits, all patched (the full and empty graphs are not)


def peak_bytes(job, fields: dict, device: str) -> float:
    """Peak bytes of the model's weights and the tensors alive during ``job(model)`` (the model is
    built before measuring: building a random one allocates transients a loaded one does not)."""
    model = new_model(fields, device)
    weights = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        job(model)
        return weights + torch.cuda.max_memory_allocated() - before
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        job(model)
    events = sorted((e.time_range.start, e.self_cpu_memory_usage) for e in prof.events() if e.self_cpu_memory_usage)
    alive = peak = 0
    for _, change in events:
        alive += change
        peak = max(peak, alive)
    return float(weights + peak)


def new_model(fields: dict, device: str) -> Qwen2ForCausalLM:
    torch.manual_seed(0)
    return Qwen2ForCausalLM(Qwen2Config(**fields, use_cache=True)).to(device)


def train_job(fields, device, rows, tokens, checkpointing):
    def job(model):
        if checkpointing:
            model.gradient_checkpointing_enable()
        model.config.use_cache = False
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
        ids = torch.randint(0, fields["vocab_size"], (rows, tokens), device=device)
        for _ in range(2):
            model(input_ids=ids, labels=ids).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    return job


def generate_job(fields, device, rows, prompt, new):
    def job(model):
        model.eval()
        ids = torch.randint(1, fields["vocab_size"], (rows, prompt), device=device)
        with torch.no_grad():
            model.generate(
                ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=0.6, top_p=0.95,
                max_new_tokens=new, min_new_tokens=new, pad_token_id=0,
            )  # fmt: skip

    return job


def pair_batch(fields, device, pairs, tokens) -> PairBatch:
    ids = torch.randint(1, fields["vocab_size"], (pairs, tokens), device=device)
    corrupt = ids.clone()
    corrupt[:, tokens // 2] = (corrupt[:, tokens // 2] + 1) % fields["vocab_size"]
    answers = torch.randint(1, fields["vocab_size"], (pairs,), device=device)
    return PairBatch(ids, corrupt, answers, (answers + 1) % fields["vocab_size"])


def eap_job(fields, device, pairs, tokens, steps, stacked):
    def job(model):
        eap_ig(model, [pair_batch(fields, device, pairs, tokens)], metric("kl"), steps, edges=True, stack_steps=stacked)

    return job


def faithfulness_job(fields, device, pairs, tokens):
    def job(model):
        graph = Graph.of(model.config)
        scores = torch.randn(graph.n_upstream, graph.n_readers) * graph.edge_mask
        with torch.no_grad():
            faithfulness_curve(model, [pair_batch(fields, device, pairs, tokens)], scores, metric("kl"), FRACTIONS)

    return job


def cases(name: str, fields: dict, device: str):
    shape = memory.Shape.of_config(fields)
    big = name != "tiny"
    rows, tokens = (2, 64) if big else (8, 64)
    for ckpt in (False, True):
        yield (
            f"train (micro-batch {rows} x {tokens} tokens{', checkpointing' if ckpt else ''})",
            train_job(fields, device, rows, tokens, ckpt),
            memory.training(shape, rows, tokens, checkpointing=ckpt),
        )
    if big:  # longer: the activations and the loss's logits, not the weights, set the peak
        yield (
            "train (micro-batch 4 x 256 tokens)",
            train_job(fields, device, 4, 256, False),
            memory.training(shape, 4, 256),
        )
        yield (
            "EAP-IG (4 pairs x 128 tokens, 5 steps stacked)",
            eap_job(fields, device, 4, 128, 5, True),
            memory.eap_ig(shape, 4, 128, 5, True),
        )
    gen_rows = 4 if big else 16
    yield (
        f"generate ({gen_rows} rows, 32 + 32 tokens)",
        generate_job(fields, device, gen_rows, 32, 32),
        memory.generation(shape, gen_rows, 32, 32, memory.FLOAT32),
    )
    pairs = 2 if big else 8
    for stacked in (True, False):
        yield (
            f"EAP-IG ({pairs} pairs x 32 tokens, 5 steps {'stacked' if stacked else 'in turn'})",
            eap_job(fields, device, pairs, 32, 5, stacked),
            memory.eap_ig(shape, pairs, 32, 5, stacked),
        )
    yield (
        f"faithfulness ({pairs} pairs x 32 tokens)",
        faithfulness_job(fields, device, pairs, 32),
        memory.faithfulness(shape, pairs, 32, len(FRACTIONS)),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="tiny,0.5b")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(f"{'shape':<6}{'job':<52}{'measured MB':>12}{'estimated MB':>14}{'ratio':>7}  largest term")
    ratios = []
    for name in args.shapes.split(","):
        for label, job, estimate in cases(name, SHAPES[name], args.device):
            measured = peak_bytes(job, SHAPES[name], args.device)
            ratios.append(measured / estimate.total)
            print(
                f"{name:<6}{label:<52}{measured / 1e6:>12.1f}{estimate.total / 1e6:>14.1f}{ratios[-1]:>7.2f}  {estimate.largest()}",
                flush=True,
            )
    print(f"measured / estimated: {min(ratios):.2f} .. {max(ratios):.2f} ({args.device})")


if __name__ == "__main__":
    main()
