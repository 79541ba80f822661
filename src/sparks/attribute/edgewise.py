"""A Qwen2-family forward pass in plain PyTorch, node by node, where every reader's input is
built from the upstream nodes' outputs: the engine for edge patching (faithfulness) and an
independent reference for the EAP-IG gradients (each reader's input is a tensor of its own).

With ``keep`` (a [n_upstream, n_readers] mask) and the corrupted run's node outputs, reader v
receives ``sum_u keep[u,v] * z_u + (1 - keep[u,v]) * z_u(corrupt)``: every edge outside the
circuit carries its corrupted activation. Without them it is the model's ordinary forward.
Several circuits run in one pass with a stack of masks [K, n_upstream, n_readers] and the
embeddings repeated K times (circuit-major: rows k*b .. (k+1)*b - 1 run circuit k).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedModel
from transformers.models.qwen2.modeling_qwen2 import apply_rotary_pos_emb

from sparks.attribute.graph import Graph
from sparks.model import head_dim


@dataclass
class EdgewiseRun:
    logits: torch.Tensor  # [batch, vocab] at the last position
    outputs: torch.Tensor  # [batch, pos, n_upstream, d] what each upstream node wrote
    inputs: list[torch.Tensor]  # per reader group, in reader order: [batch, pos, readers, d]


def run_edgewise(
    model: PreTrainedModel,
    embeds: torch.Tensor,
    keep: torch.Tensor | None = None,
    corrupt_outputs: torch.Tensor | None = None,
    record_inputs: bool = True,
) -> EdgewiseRun:
    """Run ``model`` from input embeddings ``embeds`` [batch, pos, d] (no padding, causal).

    ``keep`` is one mask [U, R] or a stack [K, U, R] (then ``embeds`` holds K copies of the
    batch whose corrupted outputs are ``corrupt_outputs`` [batch / K, pos, U, d]). Without
    ``record_inputs`` the readers' inputs are not kept (``inputs`` is empty), which saves memory."""
    if (keep is None) != (corrupt_outputs is None):
        raise ValueError("pass keep and corrupt_outputs together (patching needs both) or neither")
    cfg = model.config
    g = Graph.of(cfg)
    n_rep = g.n_heads // g.n_kv_heads
    dh = head_dim(cfg)
    b, s, _ = embeds.shape
    position_ids = torch.arange(s, device=embeds.device)[None].expand(b, s)
    cos, sin = model.model.rotary_emb(embeds, position_ids)  # [b, s, dh] each
    causal = torch.ones(s, s, dtype=torch.bool, device=embeds.device).tril()  # [q_pos, k_pos]

    outputs: list[torch.Tensor] = [embeds]  # each [b, s, d]
    inputs: list[torch.Tensor] = []

    def reader_input(first_reader: int, n_readers: int) -> torch.Tensor:
        upstream = torch.stack(outputs, dim=2)  # [b, s, U, d]
        n_up = upstream.shape[2]
        if keep is None:
            x = upstream.sum(2, keepdim=True).expand(-1, -1, n_readers, -1)  # [b, s, R, d]
        elif keep.dim() == 2:
            k = keep[:n_up, first_reader : first_reader + n_readers].to(upstream.dtype)  # [U, R]
            corrupt = corrupt_outputs[:, :, :n_up]  # [b, s, U, d]
            x = torch.einsum("bsud,ur->bsrd", upstream, k) + torch.einsum("bsud,ur->bsrd", corrupt, 1 - k)
        else:
            k = keep[:, :n_up, first_reader : first_reader + n_readers].to(upstream.dtype)  # [K, U, R]
            corrupt = corrupt_outputs[:, :, :n_up]  # [b, s, U, d]
            stacked = upstream.view(len(k), -1, *upstream.shape[1:])  # [K, b, s, U, d]
            x = torch.einsum("kbsud,kur->kbsrd", stacked, k) + torch.einsum("bsud,kur->kbsrd", corrupt, 1 - k)
            x = x.flatten(0, 1)  # [K*b, s, R, d]
        if record_inputs:
            inputs.append(x)
        return x

    for layer, block in enumerate(model.model.layers):
        attn = block.self_attn
        first = g.reader_index(layer)
        x = block.input_layernorm(reader_input(first, g.n_heads + 2 * g.n_kv_heads))  # [b, s, H + 2 KV, d]
        xq, xk, xv = x.split([g.n_heads, g.n_kv_heads, g.n_kv_heads], dim=2)

        def project(xs: torch.Tensor, linear: torch.nn.Linear, n: int) -> torch.Tensor:  # -> [b, n, s, dh]
            w = linear.weight.view(n, dh, -1)  # [n, dh, d]
            out = torch.einsum("bsnd,ned->bnse", xs, w)
            return out if linear.bias is None else out + linear.bias.view(1, n, 1, dh)

        q = project(xq, attn.q_proj, g.n_heads)  # [b, H, s, dh]
        k = project(xk, attn.k_proj, g.n_kv_heads)  # [b, KV, s, dh]
        v = project(xv, attn.v_proj, g.n_kv_heads)  # [b, KV, s, dh]
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        k, v = k.repeat_interleave(n_rep, dim=1), v.repeat_interleave(n_rep, dim=1)  # [b, H, s, dh]
        weights = torch.einsum("bhqe,bhke->bhqk", q, k) * attn.scaling
        weights = torch.softmax(weights.masked_fill(~causal, float("-inf")).float(), dim=-1).to(q.dtype)
        heads = torch.einsum("bhqk,bhke->bqhe", weights, v)  # [b, s, H, dh]
        w_o = attn.o_proj.weight.view(-1, g.n_heads, dh)  # [d, H, dh]
        outputs.extend(torch.einsum("bshe,dhe->bshd", heads, w_o).unbind(2))

        mlp_in = reader_input(first + g.readers_per_layer - 1, 1)[:, :, 0]  # [b, s, d]
        outputs.append(block.mlp(block.post_attention_layernorm(mlp_in)))

    final = reader_input(g.n_readers - 1, 1)[:, -1, 0]  # [b, d]
    logits = model.lm_head(model.model.norm(final))  # [b, vocab]
    return EdgewiseRun(logits=logits, outputs=torch.stack(outputs, dim=2), inputs=inputs)
