"""Why every CPU rule asks for one thread: two jobs side by side, at 1 and at 2 threads each.

Snakemake sets OMP_NUM_THREADS to a rule's `threads`, and `--cores 2` runs two 1-thread jobs at
once. This script runs two concurrent tiny-model training loops, first with 1 thread each, then
with 2 threads each (what an unpinned torch does), and prints the wall-time ratio measured in
this run. Above 1 means oversubscribing the cores slows the whole DAG down.
Run: python benchmarks/threads.py
"""

from __future__ import annotations

import multiprocessing as mp
import time


def _train_loop(threads: int, steps: int) -> None:
    import torch

    from sparks.model.tiny import TinyShape, build_tiny_qwen2
    from sparks.model.tokenizer import build_char_tokenizer

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_tiny_qwen2(TinyShape.defaults(hidden_size=64, intermediate_size=256), build_char_tokenizer())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(10, 90, (32, 24))  # [batch, pos]
    for _ in range(steps):
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def concurrent_wall(threads: int, jobs: int = 2, steps: int = 150) -> float:
    ctx = mp.get_context("spawn")
    workers = [ctx.Process(target=_train_loop, args=(threads, steps)) for _ in range(jobs)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return time.perf_counter() - start


def main() -> None:
    one, two = concurrent_wall(1), concurrent_wall(2)
    print(f"two concurrent training jobs (150 steps each): 1 thread each {one:.1f} s, 2 threads each {two:.1f} s")
    print(f"ratio oversubscribed / pinned wall time: {two / one:.2f}")


if __name__ == "__main__":
    main()
