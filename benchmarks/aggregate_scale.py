"""Aggregate at cluster scale: many checkpoints of a 28-layer model, read lazily.

Writes synthetic attribute-stage tables for a Qwen2.5-1.5B-shaped graph (28 layers, 12 heads,
2 KV heads: 84,715 edges) at --checkpoints checkpoints into a temporary folder, then times
``aggregate_run`` and prints the ratio of its peak memory rise to the size of all edge tables
held in memory at once (a ratio well below 1 means the edges it does not need are never loaded).
Bootstrap is off here (it reads one checkpoint's pair scores at a time; see the embedded DAG).
Run: python benchmarks/aggregate_scale.py [--checkpoints 200]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from sparks.aggregate import AggregateSettings, aggregate_run
from sparks.model.graph import Graph, ranked


def peak_rss_mb() -> float:
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("VmHWM")) / 1024


def write_tables(root: Path, graph: Graph, steps: list[int], seed: int) -> tuple[dict[str, list[Path]], int]:
    """Write each checkpoint's tables under ``root``; returns the files by kind and the edge tables' size."""
    rng = np.random.default_rng(seed)
    heads = pl.DataFrame(
        {
            "layer": np.repeat(np.arange(graph.n_layers), graph.n_heads),
            "head": np.tile(np.arange(graph.n_heads), graph.n_layers),
            "kv_head": np.tile(np.arange(graph.n_heads) // (graph.n_heads // graph.n_kv_heads), graph.n_layers),
        }
    )
    template = graph.edges_frame(graph.edge_mask.float())  # names in graph order
    n_bytes, files = 0, {kind: [] for kind in ("heads", "edges", "pair_edges", "faithfulness")}
    for step in steps:
        scores = rng.standard_normal(graph.n_edges) * rng.gamma(0.5, size=graph.n_edges)
        edges = ranked(template.select("src", "dst", "dst_input").with_columns(pl.Series("score", scores)))
        edges = edges.with_columns(pl.lit(step).alias("step"))
        n_bytes += edges.estimated_size()
        curve = pl.DataFrame({"step": [step] * 3, "n_edges": [0, 100, graph.n_edges], "faithfulness": [0.0, 0.9, 1.0]})
        pair_scores = pl.DataFrame({"step": [step], "scores": [scores.astype(np.float32)]})
        step_heads = heads.with_columns(pl.lit(step).alias("step"))
        for kind, df in (("edges", edges), ("heads", step_heads), ("faithfulness", curve), ("pair_edges", pair_scores)):
            path = root / f"{kind}-{step}.parquet"
            df.write_parquet(path)
            files[kind].append(path)
    return files, n_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoints", type=int, default=200)
    parser.add_argument("--top-n", type=int, default=500)
    args = parser.parse_args()
    graph = Graph(n_layers=28, n_heads=12, n_kv_heads=2)
    steps = list(range(0, 10 * args.checkpoints, 10))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        files, edge_bytes = write_tables(root, graph, steps, seed=0)
        written = time.perf_counter() - start
        before = peak_rss_mb()
        start = time.perf_counter()
        tables = aggregate_run(files, steps, AggregateSettings.defaults(top_n=args.top_n, bootstrap=0))
        took = time.perf_counter() - start
        rise = max(peak_rss_mb() - before, 0.0)
    print(
        f"{args.checkpoints} checkpoints x {graph.n_edges} edges (28 layers x 12 heads, 2 KV; tables written in {written:.0f} s): "
        f"aggregate {took:.1f} s, {tables['cohorts'].height} heads with a status; peak memory rise {rise:.0f} MiB vs "
        f"{edge_bytes / 2**20:.0f} MiB for all edge tables in memory: ratio {rise / (edge_bytes / 2**20):.3f}"
    )


if __name__ == "__main__":
    main()
