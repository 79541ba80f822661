"""What exact per-head effects cost: ``sparks.attribute.patching.head_effects`` (every head patched,
one stacked forward per layer) over the bare clean + corrupted forwards of the same pairs, and the
brute-force loop it replaces (one forward per head, ``sparks.attribute.exact``) over it. Also the
ratio to EAP-IG (heads and edges) on the same batches, the cost the attribute job already pays.

Synthetic arithmetic pairs (the embedded task) on a random Qwen2 of the given shape.
Run: python benchmarks/exact_effects.py [--pairs 64] [--batch-size 16] [--hidden 64] [--layers 4] [--heads 8]
"""

from __future__ import annotations

import argparse
import time

import polars as pl
import torch


def timed(fn, repeats: int = 3) -> float:
    """The fastest of ``repeats`` runs, after a warm-up."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=8)
    args = parser.parse_args()
    from sparks.attribute.batches import pair_batches
    from sparks.attribute.eap import eap_ig
    from sparks.attribute.exact import head_patching_effects
    from sparks.attribute.metrics import METRICS
    from sparks.attribute.patching import head_effects
    from sparks.data.tasks import task_pairs
    from sparks.model.tiny import TinyShape, build_tiny_qwen2
    from sparks.model.tokenizer import build_char_tokenizer

    torch.set_num_threads(1)
    tokenizer = build_char_tokenizer()
    task = {"source": "synthetic", "difficulties": {"easy": 1, "medium": 2, "hard": 4}, "n_pairs": args.pairs}
    pairs = task_pairs(pl.DataFrame(), task, 0, tokenizer).filter(~pl.col("think")).head(args.pairs)
    shape = TinyShape.defaults(
        hidden_size=args.hidden, n_layers=args.layers, n_heads=args.heads, n_kv_heads=2, intermediate_size=4 * args.hidden
    )
    torch.manual_seed(0)
    model = build_tiny_qwen2(shape, tokenizer).eval()
    batches = pair_batches(pairs, tokenizer, args.batch_size)
    kl = METRICS["kl"]

    def bare() -> None:
        with torch.no_grad():
            for batch in batches:
                model(batch.clean_ids, use_cache=False, **batch.model_inputs())
                model(batch.corrupt_ids, use_cache=False, **batch.model_inputs())

    times = {
        "bare clean + corrupted forwards": timed(bare),
        "exact, stacked (sparks)": timed(lambda: head_effects(model, batches, kl)),
        "exact, one forward per head": timed(lambda: head_patching_effects(model, batches, kl), repeats=1),
        "EAP-IG, edges and heads (m = 5)": timed(lambda: eap_ig(model, batches, kl, 5), repeats=1),
    }
    print(f"{pairs.height} pairs, batch {args.batch_size}; hidden {args.hidden}, {args.layers} layers x {args.heads} heads")
    for name, seconds in times.items():
        print(f"  {name}: {seconds:.3f} s")
    exact = times["exact, stacked (sparks)"]
    print(f"exact effects over the bare forwards: {exact / times['bare clean + corrupted forwards']:.1f}x")
    print(f"one forward per head over the stacked exact effects: {times['exact, one forward per head'] / exact:.2f}x")
    print(f"exact effects over EAP-IG: {exact / times['EAP-IG, edges and heads (m = 5)']:.2f}")


if __name__ == "__main__":
    main()
