"""How much EAP-IG costs over the passes it cannot avoid, on the tiny default and a 0.5B shape.

For one batch of clean/corrupted pairs (batch 8, 24 tokens by default) this prints, measured in
this run (median of --repeats after a warm-up):
- EAP-IG time: ``EapIg.batch_scores`` (corrupted forward, m IG forward+backward through
  nnsight, per-head norm gradients, all edge and head scores);
- the bare cost: m forward+backward passes of the same batch in plain PyTorch, parameters frozen
  and the gradient taken w.r.t. the input embeddings (what IG itself needs), and also with
  parameter gradients (an ordinary training step's backward) for reference;
- ratio = EAP-IG / bare, for edge and head scores and for head scores alone (``edges=False``),
  with the m steps stacked into one batch and run one after another (``stack_steps``), against
  the m passes alone and against the passes EAP-IG needs (those m plus the clean and corrupted
  forwards; the ratio shared/NOTES.md's prototype figures use);
- the peak memory per example of EAP-IG and of the bare passes, and their ratio (the rise of
  the process's peak RSS over the loaded model on CPU, peak allocated memory on CUDA).
Both EAP-IG and the bare passes feed the LM head a contiguous input (``folded_lm_head``).
Models are randomly initialised: "qwen2.5-0.5b" has Qwen2.5-0.5B's shape (24 layers, 14 heads,
2 KV heads, hidden 896, vocabulary 151936).
Run: python benchmarks/attribution.py [--shape tiny|qwen2.5-0.5b|all] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from sparks.attribute.batches import PairBatch
from sparks.attribute.eap import EapIg
from sparks.attribute.metrics import METRICS, Targets
from sparks.model import folded_lm_head

SHAPES = {
    "tiny": dict(
        hidden_size=64, intermediate_size=256, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2, vocab_size=101
    ),
    "qwen2.5-0.5b": dict(
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        vocab_size=151936,
    ),
}


def build(shape: str, device: str) -> Qwen2ForCausalLM:
    torch.manual_seed(0)
    config = Qwen2Config(**SHAPES[shape], tie_word_embeddings=True, max_position_embeddings=4096, rope_theta=1e6)
    return Qwen2ForCausalLM(config).to(device).eval()


def make_batch(vocab: int, batch: int, seq: int, device: str) -> PairBatch:
    clean = torch.randint(10, vocab, (batch, seq))  # [batch, pos]
    corrupt = clean.clone()
    corrupt[:, seq // 2] = (clean[:, seq // 2] + 1) % vocab  # one token changed per pair
    answers = torch.randint(10, vocab, (2, batch))
    return PairBatch(clean, corrupt, answers[0], answers[1]).to(device)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, repeats: int, device: str) -> float:
    fn()  # warm-up: pages in weights, allocator pools
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def clean_targets(model, batch: PairBatch) -> Targets:
    with torch.no_grad():
        clean_logits = model(batch.clean_ids, use_cache=False, logits_to_keep=1).logits[:, -1]
    return Targets(clean_logits, batch.clean_answer, batch.corrupt_answer)


def bare_passes(model, batch: PairBatch, targets: Targets, steps: int, param_grads: bool) -> None:
    """``steps`` forward+backward passes of the batch (KL against the clean logits), nothing else."""
    model.requires_grad_(param_grads)
    with folded_lm_head(model):
        for _ in range(steps):
            embeds = model.model.embed_tokens(batch.corrupt_ids).detach().requires_grad_(not param_grads)
            logits = model(inputs_embeds=embeds, use_cache=False, logits_to_keep=1).logits[:, -1]
            METRICS["kl"](logits, targets).sum().backward()
    model.zero_grad(set_to_none=True)
    model.requires_grad_(False)


def peak_rss_mb() -> float:
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("VmHWM")) / 1024


def reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as handle:  # "5" resets the peak RSS (Linux)
        handle.write("5")


def current_rss_mb() -> float:
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("VmRSS")) / 1024


def peak_memory_per_example(fn, n: int, device: str) -> float:
    """Peak memory that ``fn()`` adds, per example of a batch of ``n``."""
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        return (torch.cuda.max_memory_allocated() - base) / 2**20 / n
    base = current_rss_mb()
    reset_peak_rss()
    fn()
    return (peak_rss_mb() - base) / n


def forwards(model, batch: PairBatch) -> None:
    """The clean and the corrupted forward of the batch, without gradients."""
    with torch.no_grad(), folded_lm_head(model):
        for ids in (batch.clean_ids, batch.corrupt_ids):
            model(ids, use_cache=False, logits_to_keep=1)


MODES = [(stack, edges) for stack in (True, False) for edges in (True, False)]


def memory_per_example(model, batch: PairBatch, targets: Targets, m: int, device: str) -> dict[str, float]:
    """Peak memory per example of the bare passes and of each EAP-IG mode, in MiB."""
    peaks = {"bare": peak_memory_per_example(lambda: bare_passes(model, batch, targets, m, False), len(batch), device)}
    for stack, edges in MODES:
        scorer = EapIg(model, METRICS["kl"], m, edges=edges, stack_steps=stack)
        scorer.batch_scores(batch)  # warm-up
        peaks[f"{stack} {edges}"] = peak_memory_per_example(lambda: scorer.batch_scores(batch), len(batch), device)  # noqa: B023
    return peaks


def measure_memory_apart(args: argparse.Namespace, shape: str) -> dict[str, float]:
    """Memory figures from a fresh process in which glibc maps every large block and gives it back
    when freed (a fixed MALLOC_MMAP_THRESHOLD_), so each peak RSS counts that run's own live memory,
    not heap kept from earlier runs. Times are taken here, without it (page faults slow it down)."""
    command = [sys.executable, __file__, "--shape", shape, "--device", args.device, "--batch", str(args.batch)]
    command += ["--seq", str(args.seq), "--ig-steps", str(args.ig_steps), "--memory-only"]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    return json.loads(subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=[*SHAPES, "all"], default="all")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=24)
    parser.add_argument("--ig-steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    m = args.ig_steps
    if args.memory_only:
        model = build(args.shape, args.device)
        batch = make_batch(model.config.vocab_size, args.batch, args.seq, args.device)
        print(json.dumps(memory_per_example(model, batch, clean_targets(model, batch), m, args.device)))
        return
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, batch {args.batch} x {args.seq} tokens, m = {m}")
    for shape in SHAPES if args.shape == "all" else [args.shape]:
        memory = measure_memory_apart(args, shape) if args.device == "cpu" else {}
        model = build(shape, args.device)
        batch = make_batch(model.config.vocab_size, args.batch, args.seq, args.device)
        targets = clean_targets(model, batch)
        if not memory:  # CUDA: the allocator's own peak, measured here
            memory = memory_per_example(model, batch, targets, m, args.device)
        n_params = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"{shape} ({n_params:.1f}M params, {EapIg(model, METRICS['kl']).graph.n_edges} edges)")
        frozen = timed(lambda: bare_passes(model, batch, targets, m, False), args.repeats, args.device)  # noqa: B023
        both = frozen + timed(lambda: forwards(model, batch), args.repeats, args.device)  # noqa: B023
        trained = timed(lambda: bare_passes(model, batch, targets, m, True), args.repeats, args.device)  # noqa: B023
        print(
            f"  bare: {m} frozen fwd+bwd {frozen:.3f} s; with the clean and corrupted forwards {both:.3f} s; "
            f"{m} fwd+bwd with parameter grads {trained:.3f} s; peak memory per example {memory['bare']:.1f} MiB"
        )
        for stack, edges in MODES:
            scorer = EapIg(model, METRICS["kl"], m, edges=edges, stack_steps=stack)
            took = timed(lambda: scorer.batch_scores(batch), args.repeats, args.device)  # noqa: B023
            peak = memory[f"{stack} {edges}"]
            print(
                f"  EAP-IG {'edges+heads' if edges else 'heads alone':>11}, steps {'stacked' if stack else 'in turn'}: "
                f"{took:.3f} s | ratio {took / frozen:.2f} to the {m} fwd+bwd, {took / both:.2f} to those and the 2 "
                f"forwards | memory per example {peak:.1f} MiB, ratio {peak / max(memory['bare'], 1e-9):.2f}"
            )


if __name__ == "__main__":
    main()
