"""Slow, independent references for the attribution code (used by tests and benchmarks/ only).

- :func:`head_patching_effects`: exact activation patching of each head's output, by brute
  force with plain PyTorch hooks (one forward per head).
- :func:`reference_edge_scores`: EAP-IG computed through :mod:`sparks.attribute.edgewise`, where
  every reader's input is a tensor of its own, so autograd gives dL/dx_v directly (no nnsight, no
  hand-written norm gradients).
- :func:`edge_patched_logits`: one circuit's patched run by its definition, each reader's input
  summed edge by edge and every node computed (no difference buffer, nothing skipped).
Sign convention as everywhere: corrupted minus clean.
"""

from __future__ import annotations

import torch
from transformers import PreTrainedModel

from sparks.attribute.batches import PairBatch
from sparks.attribute.eap import Metric
from sparks.attribute.edgewise import LayerAttention, run_edgewise
from sparks.attribute.metrics import Targets
from sparks.model import head_dim
from sparks.model.graph import Graph
from sparks.types import EdgeScores


@torch.no_grad()
def head_patching_effects(model: PreTrainedModel, batches: list[PairBatch], metric: Metric) -> torch.Tensor:
    """[n_layers, n_heads]: mean over pairs of m(head's o_proj input slice patched to its
    corrupted value at every position) - m(clean)."""
    g = Graph.of(model.config)
    layers = model.model.layers
    dh = head_dim(model.config)
    effects = torch.zeros(g.n_layers, g.n_heads, dtype=torch.float64)
    n = 0
    for batch in batches:
        corrupted: dict[int, torch.Tensor] = {}
        saves = [
            layer.self_attn.o_proj.register_forward_pre_hook(lambda mod, args, i=i: corrupted.__setitem__(i, args[0]))
            for i, layer in enumerate(layers)
        ]
        padding = batch.model_inputs()
        model(batch.corrupt_ids, use_cache=False, **padding)
        for handle in saves:
            handle.remove()
        clean_logits = model(batch.clean_ids, use_cache=False, **padding).logits[:, -1]
        targets = Targets(clean_logits, batch.clean_answer, batch.corrupt_answer)
        base = metric(clean_logits, targets)
        for layer in range(g.n_layers):
            for head in range(g.n_heads):
                cols = slice(head * dh, (head + 1) * dh)

                def patch(mod, args, layer=layer, cols=cols):
                    x = args[0].clone()
                    x[..., cols] = corrupted[layer][..., cols]
                    return (x,)

                handle = layers[layer].self_attn.o_proj.register_forward_pre_hook(patch)
                patched = model(batch.clean_ids, use_cache=False, **padding).logits[:, -1]
                handle.remove()
                effects[layer, head] += (metric(patched, targets) - base).sum().item()
        n += len(batch)
    return effects / n


def reference_edge_scores(model: PreTrainedModel, batch: PairBatch, metric: Metric, ig_steps: int) -> EdgeScores:
    """EAP-IG edge scores of one batch (summed over its pairs) by autograd through the edgewise forward."""
    g = Graph.of(model.config)
    model.requires_grad_(False)
    embed = model.model.embed_tokens
    e_clean, e_corrupt = embed(batch.clean_ids), embed(batch.corrupt_ids)  # [b, s, d]
    clean, corrupt = run_edgewise(model, e_clean, mask=batch.mask), run_edgewise(model, e_corrupt, mask=batch.mask)
    delta = corrupt.outputs - clean.outputs  # [b, s, n_up, d]
    targets = Targets(clean.logits.detach(), batch.clean_answer, batch.corrupt_answer)
    grad_sum = torch.zeros(*delta.shape[:2], g.n_readers, delta.shape[-1])  # [b, s, n_readers, d]
    for k in range(1, ig_steps + 1):
        embeds = (e_corrupt + k / ig_steps * (e_clean - e_corrupt)).requires_grad_(True)
        run = run_edgewise(model, embeds, mask=batch.mask)
        grads = torch.autograd.grad(metric(run.logits, targets).sum(), run.inputs)
        grad_sum += torch.cat(grads, dim=2)
    edges = torch.einsum("bsud,bsvd->uv", delta, grad_sum / ig_steps) * g.edge_mask
    heads = torch.stack([edges[g.head_index(layer) : g.mlp_index(layer)].sum(1) for layer in range(g.n_layers)])
    return EdgeScores(edges=edges, heads=heads, n_pairs=len(batch))


@torch.no_grad()
def edge_patched_logits(
    model: PreTrainedModel,
    embeds: torch.Tensor,
    keep: torch.Tensor,
    corrupt_outputs: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Last-position logits [b, vocab] of the circuit ``keep`` [U, R]: reader v's input is
    ``sum_u (z_u if keep[u, v] else c_u)`` over the nodes before it, with z_u this run's output of
    node u and c_u its corrupted output (``corrupt_outputs`` [b, s, U, d])."""
    g = Graph.of(model.config)
    attention = LayerAttention(model, embeds, mask)
    outputs = [embeds]

    def reader_input(reader: int) -> torch.Tensor:  # [b, s, d]
        return sum(z if keep[u, reader] else corrupt_outputs[:, :, u] for u, z in enumerate(outputs))

    for layer, block in enumerate(model.model.layers):
        first = g.reader_index(layer)
        x = torch.stack([reader_input(first + r) for r in range(g.n_heads + 2 * g.n_kv_heads)])  # [H + 2 KV, b, s, d]
        outputs.extend(attention(layer, block.input_layernorm(x)).unbind(2))
        outputs.append(block.mlp(block.post_attention_layernorm(reader_input(first + g.readers_per_layer - 1))))
    return model.lm_head(model.model.norm(reader_input(g.n_readers - 1)[:, -1]))
