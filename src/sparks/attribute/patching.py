"""Exact per-head effects: the metric when one head's output is patched from the corrupted run.

A head's output is its slice of the ``o_proj`` input (``[batch, pos, n_heads * head_dim]``). Its
exact effect on a pair is ``m(clean run with that slice, at every position, taken from the
corrupted run) - m(clean run)``, the ground truth that EAP-IG's head scores approximate. One
corrupted forward records every layer's o_proj input; then, per layer, one forward of the batch
stacked ``n_heads`` times patches head j in copy j, so a checkpoint costs ``2 + n_layers``
forwards of ``n_heads`` times the batch instead of one forward per head.
"""

from __future__ import annotations

import torch
from transformers import PreTrainedModel

from sparks.attribute.batches import PairBatch
from sparks.attribute.eap import Metric
from sparks.attribute.metrics import Targets
from sparks.model import head_dim


@torch.no_grad()
def head_effects(model: PreTrainedModel, batches: list[PairBatch], metric: Metric) -> torch.Tensor:
    """[n_pairs, n_layers, n_heads] float64: each pair's exact effect of every head, pairs in
    batch order (``torch.cat([b.rows for b in batches])`` names them)."""
    layers = model.model.layers
    n_heads, dh = model.config.num_attention_heads, head_dim(model.config)
    heads = torch.arange(n_heads)
    out = []
    for batch in batches:
        b, s = batch.clean_ids.shape
        corrupted: dict[int, torch.Tensor] = {}
        saves = [
            layer.self_attn.o_proj.register_forward_pre_hook(
                lambda mod, args, i=i, saved=corrupted: saved.__setitem__(i, args[0])
            )
            for i, layer in enumerate(layers)
        ]
        try:
            model(batch.corrupt_ids, use_cache=False, logits_to_keep=1, **batch.model_inputs())
        finally:
            for handle in saves:
                handle.remove()
        clean_logits = model(batch.clean_ids, use_cache=False, logits_to_keep=1, **batch.model_inputs()).logits[:, -1]
        targets = Targets(clean_logits, batch.clean_answer, batch.corrupt_answer)
        base = metric(clean_logits, targets).double()  # [b]
        stacked = batch.clean_ids.repeat(n_heads, 1)  # copy j (rows j*b .. j*b + b - 1) patches head j
        effects = torch.empty(b, len(layers), n_heads, dtype=torch.float64)
        for index, layer in enumerate(layers):
            source = corrupted[index].view(b, s, n_heads, dh).permute(2, 0, 1, 3)  # [head, b, s, dh]

            def patch(mod, args, source=source, b=b, s=s):
                x = args[0].clone().view(n_heads, b, s, n_heads, dh)
                x[heads, :, :, heads] = source  # copy j takes head j's corrupted output
                return (x.view(n_heads * b, s, n_heads * dh),)

            handle = layer.self_attn.o_proj.register_forward_pre_hook(patch)
            try:
                logits = model(stacked, use_cache=False, logits_to_keep=1, **batch.model_inputs(n_heads)).logits[:, -1]
            finally:
                handle.remove()
            patched = metric(logits, targets.repeat(n_heads)).double().view(n_heads, b)
            effects[:, index] = (patched - base).T
        out.append(effects)
    return torch.cat(out)
