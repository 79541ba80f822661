"""What padded batching buys on real GSM8K pairs: EAP-IG (edges + heads) on pairs batched with
left padding, over the same pairs run one at a time (hub pairs rarely share a token length, so
equal-length batching ran them as batches of one).

Uses the repository's test fixtures: real GSM8K rows and Qwen2.5's vocabulary with its chat
template, built offline (tests/qwen_tokenizer.py), and a random Qwen2 of the given width.
Run: python benchmarks/padded_batches.py [--pairs 32] [--batch-size 8] [--hidden 256] [--layers 4]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import torch

TESTS = Path(__file__).resolve().parents[1] / "tests"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    args = parser.parse_args()
    sys.path.insert(0, str(TESTS))
    from qwen_tokenizer import build_qwen25_tokenizer
    from transformers import AutoTokenizer

    from sparks.attribute.batches import pair_batches
    from sparks.attribute.eap import eap_ig
    from sparks.attribute.metrics import METRICS
    from sparks.data.hub import load_hub_problems
    from sparks.data.prompting import Prompter, PromptSettings
    from sparks.data.tasks import task_pairs
    from sparks.model.tiny import TinyShape, build_tiny_qwen2

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = AutoTokenizer.from_pretrained(build_qwen25_tokenizer(Path(tmp) / "tokenizer"))
        for name in ("train.jsonl", "test.jsonl"):
            shutil.copy(TESTS / "fixtures" / "gsm8k" / name, Path(tmp) / name)
        problems = load_hub_problems("gsm8k", tmp, None, n_train=300, n_eval=1)
    prompter = Prompter(tokenizer, PromptSettings.defaults())
    pairs = task_pairs(problems, {"source": "gsm8k", "n_pairs": args.pairs}, 0, tokenizer, prompter)
    pairs = pairs.filter(~pl.col("think"))
    shape = TinyShape.defaults(
        hidden_size=args.hidden,
        n_layers=args.layers,
        n_heads=8,
        n_kv_heads=2,
        intermediate_size=4 * args.hidden,
        max_positions=1024,
    )
    torch.manual_seed(0)
    model = build_tiny_qwen2(shape, tokenizer).eval()
    padded, alone = pair_batches(pairs, tokenizer, args.batch_size), pair_batches(pairs, tokenizer, 1)
    print(
        f"{pairs.height} GSM8K think-off pairs, {pairs['n_tokens'].min()}-{pairs['n_tokens'].max()} tokens "
        f"({pairs['n_tokens'].n_unique()} distinct lengths); hidden {args.hidden}, {args.layers} layers, m = 5"
    )
    print(f"equal-length batching would give {pairs['n_tokens'].value_counts().height} batches; padded: {len(padded)}")
    times = {}
    for name, batches in (("padded", padded), ("one at a time", alone)):
        eap_ig(model, batches[:1], METRICS["kl"])  # warm-up
        start = time.perf_counter()
        eap_ig(model, batches, METRICS["kl"])
        times[name] = time.perf_counter() - start
        print(f"{name}: {times[name]:.2f} s")
    print(f"speed-up of padded batching: {times['one at a time'] / times['padded']:.2f}x")


if __name__ == "__main__":
    main()
