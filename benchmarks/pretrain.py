"""Where the embedded pre-training spends its time, against the model's FLOPs on this core.

Builds the base or teacher of a config (its shape, corpus and batch size), runs a few dozen of the
prepare stage's training steps on one thread, and prints, measured in this run:
- tokens per second (real tokens and padded positions) and the model's FLOPs per step
  (6 x parameters touched per position for the matmuls, plus attention);
- achieved GFLOP/s over the GFLOP/s of one dense matmul of the same width on this core, i.e. how
  far the step is from the arithmetic it has to do;
- the share of a step in building the batch, forward, backward, clipping and the optimiser, and of
  the forward+backward kernel time in matmuls and in attention (the rest is elementwise work).
Run: python benchmarks/pretrain.py [--config workflow_config.yaml] [--role teacher] [--steps 40]
"""

from __future__ import annotations

import argparse
import random
import time

import torch


def matmul_gflops(width: int, rows: int = 4096, repeats: int = 20) -> float:
    """Achieved GFLOP/s of a [rows, width] x [width, 4 width] matmul (an MLP's up-projection)."""
    a, b = torch.randn(rows, width), torch.randn(width, 4 * width)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * rows * width * 4 * width * repeats / (time.perf_counter() - start) / 1e9


def main() -> None:
    from sparks.config import load_config
    from sparks.model.tiny import TinyShape, build_tiny_qwen2
    from sparks.model.tokenizer import build_char_tokenizer
    from sparks.prepare.corpus import arithmetic_corpus
    from sparks.prepare.pretrain import length_bucketed_batches

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="workflow_config.yaml")
    parser.add_argument("--role", default="teacher", choices=("base", "teacher"))
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    torch.set_num_threads(1)
    section = load_config(args.config)[args.role]
    shape, p = TinyShape.of(section["shape"]), section["pretrain"]
    tokenizer = build_char_tokenizer()
    model = build_tiny_qwen2(shape, tokenizer)
    texts = arithmetic_corpus(p["n_texts"], p["max_ops"], p["multi_step_decay"], p["think_off_fraction"], 0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batches = length_bucketed_batches(tokenizer, texts, p["batch_size"], random.Random(0))
    d, n_layers, vocab = shape.hidden_size, shape.n_layers, len(tokenizer)
    kv = d // shape.n_heads * shape.n_kv_heads
    per_position = n_layers * (2 * d * d + 2 * d * kv + 3 * d * shape.intermediate_size) + d * vocab  # matmul weights
    phases = {"batch": 0.0, "forward": 0.0, "backward": 0.0, "clip": 0.0, "optimizer": 0.0}
    tokens = positions = flops = 0
    for step in range(args.steps + 3):
        t0 = time.perf_counter()
        ids, mask, labels = next(batches)
        t1 = time.perf_counter()
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        t4 = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        t5 = time.perf_counter()
        if step < 3:  # warm-up steps are not counted
            continue
        for key, dt in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            phases[key] += dt
        tokens += int(mask.sum())
        positions += ids.numel()
        flops += 6 * ids.numel() * per_position + 12 * ids.shape[0] * ids.shape[1] ** 2 * d * n_layers  # + QK^T, AV
    total = sum(phases.values())
    peak = matmul_gflops(d)
    print(f"{args.role}: hidden {d}, {n_layers} layers, batch {p['batch_size']}, {args.steps} steps, 1 thread")
    print(
        f"step {1000 * total / args.steps:.1f} ms; {tokens / total:,.0f} tokens/s ({positions / total:,.0f} positions/s, "
        f"{tokens / positions:.0%} not padding)"
    )
    print(
        f"model FLOPs {flops / args.steps / 1e9:.2f} GFLOP/step -> {flops / total / 1e9:.1f} GFLOP/s achieved; "
        f"a dense [4096,{d}]x[{d},{4 * d}] matmul reaches {peak:.1f} GFLOP/s on this core: ratio {flops / total / 1e9 / peak:.2f}"
    )
    print("share of a step: " + ", ".join(f"{k} {v / total:.0%}" for k, v in phases.items()))
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(5):
            ids, mask, labels = next(batches)
            model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
    kernels = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
    matmul = sum(t for k, t in kernels.items() if k in ("aten::mm", "aten::addmm", "aten::bmm"))
    attention = sum(t for k, t in kernels.items() if "scaled_dot_product" in k)
    print(
        f"forward+backward kernel time: matmuls {matmul / sum(kernels.values()):.0%}, attention {attention / sum(kernels.values()):.0%}, "
        "the rest elementwise and bookkeeping (norms, rotary, SiLU, residual adds, copies)"
    )


if __name__ == "__main__":
    main()
