"""Attribute stage: EAP-IG circuits of one checkpoint on one task's clean/corrupted pairs.

Writes five tables (schemas in :mod:`sparks.tables`): ``heads`` (node scores of every head,
plus its summed q/k/v input and output edge scores), ``edges`` (every edge of the graph in
:mod:`sparks.model.graph`, in graph order), ``pair_edges`` (each pair's edge scores, in
the same order, for bootstrap resampling downstream), ``faithfulness`` (the top-n circuit
curve with CPR/CMD) and ``head_effects`` (each pair's exact per-head patching effects, the
ground truth EAP-IG is checked against; empty with ``attribute.exact: off``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from sparks.config import Section, config_hash
from sparks.layout import ATTRIBUTION as TABLES

if TYPE_CHECKING:
    import torch

    from sparks.attribute.batches import PairBatch
    from sparks.attribute.eap import Metric
    from sparks.model.graph import Graph
    from sparks.types import EdgeScores

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AttributeSettings(Section):
    """The ``attribute`` section of the config (defaults and limits in the schema; the cross-key
    checks in ``sparks.config``)."""

    SCHEMA_PATH = ("properties", "attribute")

    method: str
    ig_steps: int
    metric: str
    batch_size: int
    stack_ig_steps: bool
    think: bool
    difficulties: tuple[str, ...] | None
    max_pairs: int | None
    pairs: str | dict
    style: dict
    faithfulness_fractions: tuple[float, ...]
    compare_think_at: str
    compare_pairs: tuple[str, ...]
    exact: str
    exact_pairs: int | None


def select_pairs(pairs: pl.DataFrame, settings: AttributeSettings) -> pl.DataFrame:
    """The pairs the settings ask for: one think mode, some difficulties, at most max_pairs each."""
    chosen = pairs.filter(pl.col("think") == settings.think)
    if settings.difficulties is not None:
        chosen = chosen.filter(pl.col("difficulty").is_in(list(settings.difficulties)))
    if settings.max_pairs is not None:
        chosen = first_of_each_difficulty(chosen, settings.max_pairs)
    if chosen.is_empty():
        raise ValueError(
            f"no pairs with think={settings.think} and difficulties {settings.difficulties} in the pairs table; "
            "check attribute.think and attribute.difficulties against the task's pairs"
        )
    return chosen


def first_of_each_difficulty(pairs: pl.DataFrame, n: int) -> pl.DataFrame:
    """The first ``n`` pairs (by pair id) of each difficulty: the same pairs at every checkpoint."""
    return pairs.sort("difficulty", "pair_id").group_by("difficulty", maintain_order=True).head(n)


def head_table(scores: EdgeScores, graph: Graph, weight_change: torch.Tensor | None = None) -> pl.DataFrame:
    """One row per head: node score, rank, the summed edge scores into q/k/v and out of it (null
    when only head scores were computed) and how far its own weights moved from the starting
    model's (``weight_change`` [layers, heads]; null when unknown)."""
    import torch

    rows = []
    edges = scores.edges if scores.edges is not None else torch.full((graph.n_upstream, graph.n_readers), float("nan"))
    for layer in range(graph.n_layers):
        first, upstream = graph.reader_index(layer), graph.head_index(layer)
        into = edges[:, first : first + graph.n_heads + 2 * graph.n_kv_heads].sum(0)  # [H + 2 KV]
        out = edges[upstream : upstream + graph.n_heads].sum(1)  # [H]
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
                    "weight_change": None if weight_change is None else float(weight_change[layer, head]),
                }
            )
    from sparks.model.graph import ranked

    table = ranked(pl.DataFrame(rows, schema_overrides={"weight_change": pl.Float64})).select(
        "layer", "head", "kv_head", "score", "abs_score", "rank", "score_q", "score_k", "score_v", "score_out", "weight_change"
    )
    return table.with_columns(pl.col("score_q", "score_k", "score_v", "score_out").fill_nan(None))


def score_checkpoint(
    checkpoint: str | Path,
    pairs: pl.DataFrame,
    settings: AttributeSettings,
    device: str | None = None,
    tables: tuple[str, ...] = TABLES,
    base: str | Path | None = None,
) -> dict[str, pl.DataFrame]:
    """The checkpoint's scores by ``attribute.method`` (EAP-IG by default): returns the asked-for
    ``tables`` (of TABLES) without provenance.

    The faithfulness curve, the one costly extra, is computed only when asked for. ``base``: the
    run's starting model, whose weights each head's ``weight_change`` is measured from.
    """
    import torch

    from sparks.attribute.batches import pair_batches
    from sparks.attribute.faithfulness import faithfulness_curve
    from sparks.attribute.metrics import metric
    from sparks.methods import attribution_method
    from sparks.model.graph import Graph
    from sparks.model.load import load_checkpoint
    from sparks.sources import ModelError, check_model_type

    model, tokenizer = load_checkpoint(checkpoint, device=device, dtype=torch.float32)  # gradients in full precision
    check_model_type(model.config.to_dict(), f"model {model.name_or_path!r} (checkpoint {checkpoint})", ModelError)
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
    score = attribution_method(settings.method).build()  # attribute.method: EAP-IG unless another is registered
    scores = score(model, batches, fn, settings, edges=tables != ("heads",))
    graph = Graph.of(model.config)
    from sparks.model.weights import head_weight_change

    out = {"heads": head_table(scores, graph, None if base is None else head_weight_change(model, base))}
    if "edges" in tables:
        out["edges"] = graph.edges_frame(scores.edges)
    if "pair_edges" in tables:
        pair_edges = chosen[scored_rows(batches)].select("pair_id", "difficulty", "think")
        out["pair_edges"] = pair_edges.with_columns(pl.Series("scores", scores.pair_edges.numpy(), dtype=pl.List(pl.Float32)))
    if "faithfulness" in tables:
        out["faithfulness"] = faithfulness_curve(model, batches, scores.edges, fn, settings.faithfulness_fractions)
        log.info("faithfulness CPR %.3f CMD %.3f", out["faithfulness"]["cpr"][0], out["faithfulness"]["cmd"][0])
    if "head_effects" in tables:
        out["head_effects"] = effects_table(model, tokenizer, chosen, settings, fn, graph)
    return {name: out[name] for name in tables}


def effects_table(model, tokenizer, chosen: pl.DataFrame, settings: AttributeSettings, fn: Metric, graph: Graph) -> pl.DataFrame:
    """One row per (pair, head): the head's exact patching effect on the pair (attribute.exact),
    on the first ``exact_pairs`` scored pairs of each difficulty (by pair id); no rows when exact
    effects are off."""
    from sparks.attribute.batches import pair_batches
    from sparks.attribute.patching import head_effects

    schema = {"pair_id": pl.Int64, "difficulty": pl.String, "think": pl.Boolean, "layer": pl.Int64, "head": pl.Int64}
    if settings.exact == "off":
        return pl.DataFrame(schema={**schema, "effect": pl.Float64})
    pairs = chosen if settings.exact_pairs is None else first_of_each_difficulty(chosen, settings.exact_pairs)
    batches = pair_batches(pairs, tokenizer, settings.batch_size)
    effects = head_effects(model, batches, fn).numpy()  # [n_pairs, layers, heads], batch order
    log.info("exact effects of %d heads on %d pairs", graph.n_layers * graph.n_heads, len(effects))
    n_pairs, n_heads = len(effects), graph.n_layers * graph.n_heads
    keys = pairs[scored_rows(batches).repeat(n_heads)].select("pair_id", "difficulty", "think")
    return keys.with_columns(
        pl.Series("layer", np.tile(np.arange(graph.n_layers).repeat(graph.n_heads), n_pairs), dtype=pl.Int64),
        pl.Series("head", np.tile(np.arange(graph.n_heads), n_pairs * graph.n_layers), dtype=pl.Int64),
        pl.Series("effect", effects.reshape(-1), dtype=pl.Float64),
    )


def scored_rows(batches: list[PairBatch]) -> np.ndarray:
    """The pairs-frame rows of ``batches``, in the order they were scored."""
    return np.concatenate([b.rows.numpy() for b in batches])


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
    from sparks.attribute.style import oriented
    from sparks.manifest import read_manifest
    from sparks.tables import read_table, with_provenance, write_table

    unknown = set(out) - set(TABLES)
    if unknown or not out:
        raise ValueError(f"attribute_checkpoint writes some of {', '.join(TABLES)}; got {sorted(out)}")
    settings = AttributeSettings.from_config(config)
    if think is not None:
        settings = replace(settings, think=think)
    run = read_manifest(manifest)
    checkpoint = run.checkpoint(step)
    pairs = oriented(read_table(pairs_path, "pairs"), starting_model=step == run.steps[0])
    tables = score_checkpoint(
        checkpoint, pairs, settings, tables=tuple(name for name in TABLES if name in out), base=run.checkpoint(run.steps[0])
    )
    provenance = dict(
        experiment=config["experiment"],
        run=run.run,
        step=step,
        task=task,
        model_hash=run.model_hash(step),
        config_hash=config_hash({**config["attribute"], "think": settings.think}),
    )
    for name, df in tables.items():
        write_table(with_provenance(df, **provenance), name, out[name])
    return out
