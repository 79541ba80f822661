"""Faithfulness of top-n edge circuits, measured by patching every edge outside the circuit.

``faithfulness(n) = (m(circuit_n) - m(corrupt)) / (m(model) - m(corrupt))`` with each m the mean
of the metric over all pairs: 1 when the circuit restores the model's behaviour, 0 when it does no
better than the corrupted run. The curve runs over circuit sizes given as fractions of all
edges, from the empty circuit (0) to the full graph (1). Its areas, as in the MIB benchmark,
by the trapezoid rule over the edge fraction:
CPR = area under faithfulness (higher is better), CMD = area under |1 - faithfulness| (lower is better).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from sparks.attribute.batches import PairBatch
from sparks.attribute.eap import Metric
from sparks.attribute.edgewise import run_edgewise
from sparks.attribute.metrics import Targets
from sparks.memory import FAITHFULNESS_ELEMENTS
from sparks.model.graph import Graph


def circuit_sizes(n_edges: int, fractions: Sequence[float]) -> list[int]:
    """Edge counts of the curve: the empty circuit, each fraction (at least one edge), the full graph."""
    return sorted({0, n_edges, *(min(n_edges, max(1, round(f * n_edges))) for f in fractions)})


def top_edges(graph: Graph, edge_scores: torch.Tensor, n: int) -> torch.Tensor:
    """[n_upstream, n_readers] bool mask of the ``n`` edges with the largest |score|."""
    scores = edge_scores.abs().masked_fill(~graph.edge_mask, -1.0).flatten()
    keep = torch.zeros_like(scores, dtype=torch.bool)
    keep[scores.argsort(descending=True)[:n]] = True
    return keep.view(graph.n_upstream, graph.n_readers)


@torch.no_grad()
def faithfulness_curve(
    model: PreTrainedModel,
    batches: list[PairBatch],
    edge_scores: torch.Tensor,
    metric: Metric,
    fractions: Sequence[float],
    max_elements: int = FAITHFULNESS_ELEMENTS,
) -> pl.DataFrame:
    """One row per circuit size: n_edges, edge_fraction, metric_circuit, faithfulness, the two
    reference metrics, and the curve's CPR and CMD (the same on every row).

    The curve's ends need no patching: the empty circuit is the corrupted run and the full graph
    the model itself. The circuits in between run together, as many per patched pass as keep the
    pass's node outputs under ``max_elements`` numbers (bounding memory on large models)."""
    graph = Graph.of(model.config)
    device = next(model.parameters()).device
    sizes = circuit_sizes(graph.n_edges, fractions)
    inner = [i for i, n in enumerate(sizes) if 0 < n < graph.n_edges]
    masks = torch.stack([top_edges(graph, edge_scores, sizes[i]) for i in inner]).to(device)  # [K, U, R]
    totals = np.zeros(len(sizes))
    model_total = corrupt_total = 0.0
    embed = model.model.embed_tokens
    bar = tqdm(batches, unit="batch", mininterval=2.0)
    bar.set_description_str(f"faithfulness, {len(sizes)} circuit sizes")
    for batch in bar:
        batch = batch.to(device)
        clean_embeds = embed(batch.clean_ids)  # [b, s, d]
        corrupt = run_edgewise(model, embed(batch.corrupt_ids), record_inputs=False, mask=batch.mask)
        padding = batch.model_inputs()
        clean_logits = model(inputs_embeds=clean_embeds, use_cache=False, logits_to_keep=1, **padding).logits[:, -1]  # [b, vocab]
        targets = Targets(clean_logits, batch.clean_answer, batch.corrupt_answer)
        model_total += metric(clean_logits, targets).sum().item()
        corrupt_total += metric(corrupt.logits, targets).sum().item()
        b, s, d = clean_embeds.shape
        per_circuit = b * s * graph.n_upstream * d  # node outputs of one patched copy of the batch
        step = max(1, max_elements // per_circuit)
        for start in range(0, len(inner), step):
            chunk = masks[start : start + step]  # [k, U, R]
            repeated = clean_embeds.repeat(len(chunk), 1, 1)  # [k*b, s, d]
            mask = None if batch.mask is None else batch.mask.repeat(len(chunk), 1)
            patched = run_edgewise(model, repeated, chunk, corrupt.outputs, record_inputs=False, mask=mask)
            values = metric(patched.logits, targets.repeat(len(chunk))).view(len(chunk), b).sum(1)  # [k]
            for offset, value in enumerate(values.tolist()):
                totals[inner[start + offset]] += value
    n = sum(len(b) for b in batches)
    m_model, m_corrupt = model_total / n, corrupt_total / n
    m_circuit = totals / n
    m_circuit[[i for i, size in enumerate(sizes) if size == 0]] = m_corrupt  # the empty circuit: every edge corrupted
    m_circuit[[i for i, size in enumerate(sizes) if size == graph.n_edges]] = m_model  # the full graph: the model
    if abs(m_model - m_corrupt) < 1e-9:
        raise ValueError(
            "the corrupted prompts do not change the metric (m(model) == m(corrupt)); faithfulness is undefined. "
            "Check that the pairs' answers differ"
        )
    faithful = (m_circuit - m_corrupt) / (m_model - m_corrupt)
    fraction = np.array(sizes) / graph.n_edges
    return pl.DataFrame(
        {
            "n_edges": sizes,
            "edge_fraction": fraction,
            "metric_circuit": m_circuit,
            "faithfulness": faithful,
            "metric_model": m_model,
            "metric_corrupt": m_corrupt,
            "cpr": float(np.trapezoid(faithful, fraction)),
            "cmd": float(np.trapezoid(np.abs(1 - faithful), fraction)),
        }
    )
