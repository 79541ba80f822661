"""Attribute stage: EAP-IG circuits of one checkpoint on one task's clean/corrupted pairs.

Writes four tables (schemas in :mod:`sparks.tables`): ``heads`` (node scores of every head,
plus its summed q/k/v input and output edge scores), ``edges`` (every edge of the graph in
:mod:`sparks.attribute.graph`, in graph order), ``pair_edges`` (each pair's edge scores, in
the same order, for bootstrap resampling downstream) and ``faithfulness`` (the top-n circuit
curve with CPR/CMD).
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from sparks.config import ConfigError, add_config_argument, check_task, config_hash, load_config

if TYPE_CHECKING:
    from sparks.attribute.graph import Graph
    from sparks.types import EdgeScores

log = logging.getLogger(__name__)
TABLES = ("heads", "edges", "pair_edges", "faithfulness")
COMPARE_THINK_AT = ("none", "ends", "all")  # checkpoints also scored in the other think mode
METRIC_NAMES = ("kl", "logit_diff", "logprob")  # the keys of metrics.METRICS (named here without importing torch)


@dataclass(frozen=True)
class AttributeSettings:
    """The ``attribute`` section of the config (checked by the schema and ``check_config``)."""

    ig_steps: int = 5
    metric: str = "kl"
    batch_size: int = 32
    think: bool = False
    difficulties: tuple[str, ...] | None = None
    max_pairs: int | None = None
    faithfulness_fractions: tuple[float, ...] = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
    compare_think_at: str = "ends"

    def __post_init__(self) -> None:
        if self.compare_think_at not in COMPARE_THINK_AT:
            raise ConfigError(
                f"attribute.compare_think_at = {self.compare_think_at!r} is not one of {', '.join(COMPARE_THINK_AT)}"
            )
        if self.metric not in METRIC_NAMES:
            raise ConfigError(f"attribute.metric = {self.metric!r} is not one of {', '.join(METRIC_NAMES)}; set attribute.metric")
        for key in ("ig_steps", "batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"attribute.{key} must be >= 1 (got {getattr(self, key)}); set attribute.{key}")
        if self.metric == "kl" and self.ig_steps == 1:
            raise ConfigError(
                "attribute.ig_steps = 1 with attribute.metric = kl: plain EAP takes the gradient on the clean run, where "
                "the KL gradient is exactly zero; raise attribute.ig_steps (e.g. 5) or use metric logit_diff"
            )

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> AttributeSettings:
        s = dict(config["attribute"])
        s["difficulties"] = None if s["difficulties"] is None else tuple(s["difficulties"])
        s["faithfulness_fractions"] = tuple(s["faithfulness_fractions"])
        return cls(**s)


def select_pairs(pairs: pl.DataFrame, settings: AttributeSettings) -> pl.DataFrame:
    """The pairs the settings ask for: one think mode, some difficulties, at most max_pairs each."""
    chosen = pairs.filter(pl.col("think") == settings.think)
    if settings.difficulties is not None:
        chosen = chosen.filter(pl.col("difficulty").is_in(list(settings.difficulties)))
    if settings.max_pairs is not None:
        chosen = chosen.sort("difficulty", "pair_id").group_by("difficulty", maintain_order=True).head(settings.max_pairs)
    if chosen.is_empty():
        raise ValueError(
            f"no pairs with think={settings.think} and difficulties {settings.difficulties} in the pairs table; "
            "check attribute.think and attribute.difficulties against the task's pairs"
        )
    return chosen


def head_table(scores: EdgeScores, graph: Graph) -> pl.DataFrame:
    """One row per head: node score, rank, and the summed edge scores into q/k/v and out of it."""
    rows = []
    for layer in range(graph.n_layers):
        first, upstream = graph.reader_index(layer), graph.head_index(layer)
        into = scores.edges[:, first : first + graph.n_heads + 2 * graph.n_kv_heads].sum(0)  # [H + 2 KV]
        out = scores.edges[upstream : upstream + graph.n_heads].sum(1)  # [H]
        for head in range(graph.n_heads):
            kv = graph.kv_head(head)
            rows.append(
                {
                    "layer": layer,
                    "head": head,
                    "kv_head": kv,
                    "score": float(scores.heads[layer, head]),
                    "score_q": float(into[head]),
                    "score_k": float(into[graph.n_heads + kv]),
                    "score_v": float(into[graph.n_heads + graph.n_kv_heads + kv]),
                    "score_out": float(out[head]),
                }
            )
    from sparks.attribute.graph import ranked

    return ranked(pl.DataFrame(rows)).select(
        "layer", "head", "kv_head", "score", "abs_score", "rank", "score_q", "score_k", "score_v", "score_out"
    )


def score_checkpoint(
    checkpoint: str | Path,
    pairs: pl.DataFrame,
    settings: AttributeSettings,
    device: str | None = None,
    tables: tuple[str, ...] = TABLES,
) -> dict[str, pl.DataFrame]:
    """EAP-IG on one checkpoint: returns the asked-for ``tables`` (of TABLES) without provenance.

    The faithfulness curve, the one costly extra, is computed only when asked for.
    """
    import torch

    from sparks.attribute.batches import pair_batches
    from sparks.attribute.eap import eap_ig
    from sparks.attribute.faithfulness import faithfulness_curve
    from sparks.attribute.graph import Graph
    from sparks.attribute.metrics import metric
    from sparks.model.load import load_checkpoint

    model, tokenizer = load_checkpoint(checkpoint, device=device, dtype=torch.float32)  # gradients in full precision
    chosen = select_pairs(pairs, settings)
    batches = pair_batches(chosen, tokenizer, settings.batch_size)
    fn = metric(settings.metric)
    log.info(
        "attributing %s on %d pairs in %d batches (m=%d, %s)",
        checkpoint,
        len(chosen),
        len(batches),
        settings.ig_steps,
        fn.__name__,
    )
    scores = eap_ig(model, batches, fn, settings.ig_steps)
    graph = Graph.of(model.config)
    out = {"heads": head_table(scores, graph), "edges": graph.edges_frame(scores.edges)}
    if "pair_edges" in tables:
        order = torch.cat([b.rows for b in batches])  # the pairs in the order they were scored
        pair_edges = chosen[order.numpy()].select("pair_id", "difficulty", "think")
        out["pair_edges"] = pair_edges.with_columns(pl.Series("scores", scores.pair_edges.numpy(), dtype=pl.List(pl.Float32)))
    if "faithfulness" in tables:
        out["faithfulness"] = faithfulness_curve(model, batches, scores.edges, fn, settings.faithfulness_fractions)
        log.info("faithfulness CPR %.3f CMD %.3f", out["faithfulness"]["cpr"][0], out["faithfulness"]["cmd"][0])
    return {name: out[name] for name in tables}


def attribute_checkpoint(
    config: dict[str, Any],
    manifest: Path,
    step: int,
    task: str,
    pairs_path: Path,
    out: dict[str, Path],
    think: bool | None = None,
) -> dict[str, Path]:
    """Score checkpoint ``step`` of the run in ``manifest`` and write the tables to ``out[name]``.

    ``out`` names some of TABLES; ``think`` overrides ``attribute.think`` (which pairs are scored).
    """
    from sparks.model.load import model_hash
    from sparks.tables import read_table, with_provenance, write_table
    from sparks.train import checkpoint_path, read_manifest

    unknown = set(out) - set(TABLES)
    if unknown or not out:
        raise ValueError(f"attribute_checkpoint writes some of {', '.join(TABLES)}; got {sorted(out)}")
    settings = AttributeSettings.from_config(config)
    if think is not None:
        settings = replace(settings, think=think)
    run = read_manifest(manifest)["run"]
    checkpoint = checkpoint_path(manifest, step)
    pairs = read_table(pairs_path, "pairs")
    tables = score_checkpoint(checkpoint, pairs, settings, tables=tuple(name for name in TABLES if name in out))
    provenance = dict(
        experiment=config["experiment"],
        run=run,
        step=step,
        task=task,
        model_hash=model_hash(checkpoint),
        config_hash=config_hash({**config["attribute"], "think": settings.think}),
    )
    for name, df in tables.items():
        write_table(with_provenance(df, **provenance), name, out[name])
    return out


def make_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("attribute", help="EAP-IG head and edge scores of one checkpoint on one task")
    add_config_argument(p)
    p.add_argument("--manifest", type=Path, required=True, help="the run's checkpoints.json")
    p.add_argument("--step", type=int, required=True, help="checkpoint step (one listed in the manifest)")
    p.add_argument("--task", required=True, help="task name under tasks: in the config")
    p.add_argument("--pairs", type=Path, required=True, help="the task's {task}_pairs.parquet")
    p.add_argument("--think", choices=("on", "off"), default=None, help="score these pairs (default: attribute.think)")
    p.add_argument("--heads", type=Path, help="output: head table (Parquet)")
    p.add_argument("--edges", type=Path, help="output: edge table (Parquet)")
    p.add_argument("--pair-edges", type=Path, help="output: each pair's edge scores (Parquet)")
    p.add_argument("--faithfulness", type=Path, help="output: faithfulness curve (Parquet; the costly one)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> None:
    config = load_config(args.config)
    check_task(config, args.task)
    out = {name: getattr(args, name) for name in TABLES if getattr(args, name) is not None}
    if not out:
        raise SystemExit("sparks attribute: name at least one output (--heads, --edges, --pair-edges, --faithfulness)")
    think = None if args.think is None else args.think == "on"
    attribute_checkpoint(config, args.manifest, args.step, args.task, args.pairs, out, think)
