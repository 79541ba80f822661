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
import torch.nn.functional as F
from transformers import PreTrainedModel
from transformers.models.qwen2.modeling_qwen2 import apply_rotary_pos_emb

from sparks.attribute.batches import position_ids
from sparks.attribute.graph import Graph
from sparks.model import head_dim


@dataclass
class EdgewiseRun:
    logits: torch.Tensor  # [batch, vocab] at the last position
    outputs: torch.Tensor | None  # [batch, pos, n_upstream, d] what each upstream node wrote (None when patched)
    inputs: list[torch.Tensor]  # per reader group, in reader order: [batch, pos, readers, d]


def run_edgewise(
    model: PreTrainedModel,
    embeds: torch.Tensor,
    keep: torch.Tensor | None = None,
    corrupt_outputs: torch.Tensor | None = None,
    record_inputs: bool = True,
    mask: torch.Tensor | None = None,
) -> EdgewiseRun:
    """Run ``model`` from input embeddings ``embeds`` [batch, pos, d] (causal; ``mask`` [batch, pos]
    marks real tokens when rows are left-padded: keys on padding are masked, positions count from
    each row's first real token, and a padding query attends to itself alone).

    ``keep`` is one mask [U, R] or a stack [K, U, R] (then ``embeds`` holds K copies of the
    batch whose corrupted outputs are ``corrupt_outputs`` [batch / K, pos, U, d]). Without
    ``record_inputs`` the readers' inputs are not kept (``inputs`` is empty), which saves memory.

    A patched run (no gradients) builds each reader's input as the corrupted residual stream plus
    the kept edges' differences, ``sum_u c_u + sum_u keep[u,v] (z_u - c_u)``: one batched matrix
    product per reader group over a buffer of differences, instead of restacking every upstream
    output for every reader. Readers' inputs are laid out reader-major ([R, batch, pos, d]), so
    each reader's projection reads contiguous rows."""
    if (keep is None) != (corrupt_outputs is None):
        raise ValueError("pass keep and corrupt_outputs together (patching needs both) or neither")
    if keep is not None and torch.is_grad_enabled():
        raise ValueError("patched runs take no gradients; call run_edgewise under torch.no_grad()")
    cfg = model.config
    g = Graph.of(cfg)
    n_rep = g.n_heads // g.n_kv_heads
    dh = head_dim(cfg)
    b, s, d = embeds.shape
    causal = torch.ones(s, s, dtype=torch.bool, device=embeds.device).tril()
    if mask is None:
        positions = torch.arange(s, device=embeds.device)[None].expand(b, s)
        attend = None
    else:
        positions = position_ids(mask)
        attend = (causal & mask.bool()[:, None, None, :]) | torch.eye(s, dtype=torch.bool, device=embeds.device)  # [b, 1, s, s]
    cos, sin = model.model.rotary_emb(embeds, positions)  # [b, s, dh] each

    outputs: list[torch.Tensor] = []  # each [b, s, d] (unpatched runs)
    inputs: list[torch.Tensor] = []
    if keep is not None:
        masks = (keep if keep.dim() == 3 else keep[None]).to(embeds.dtype)  # [K, U, R]
        n_masks = len(masks)
        if b % n_masks:
            raise ValueError(f"a patched run of {n_masks} circuits needs the batch repeated {n_masks} times (got {b} rows)")
        copy = b // n_masks
        corrupt = corrupt_outputs.permute(2, 0, 1, 3).contiguous()  # [U, b/K, s, d]
        prefix = corrupt.cumsum(0)  # [U, b/K, s, d]: the corrupted residual stream after each node
        deltas = embeds.new_empty(n_masks, g.n_upstream, copy, s, d)  # [K, U, b/K, s, d]: z_u - c_u
    written = 0

    def emit(z: torch.Tensor) -> None:  # z [b, s, n, d]: the outputs of the next n upstream nodes
        nonlocal written
        n = z.shape[2]
        if keep is None:
            outputs.extend(z.unbind(2))
        else:
            z = z.view(n_masks, copy, s, n, d).permute(0, 3, 1, 2, 4)  # [K, n, b/K, s, d]
            torch.sub(z, corrupt[written : written + n], out=deltas[:, written : written + n])
        written += n

    def reader_input(first_reader: int, n_readers: int) -> torch.Tensor:  # -> [R, b, s, d], reader-major
        if keep is None:
            upstream = torch.stack(outputs, dim=2)  # [b, s, U, d]
            x = upstream.sum(2, keepdim=True).expand(-1, -1, n_readers, -1)  # [b, s, R, d]
            if record_inputs:
                inputs.append(x)
            return x.permute(2, 0, 1, 3)
        k = masks[:, :written, first_reader : first_reader + n_readers]  # [K, U, R]
        mixed = torch.bmm(k.transpose(1, 2), deltas[:, :written].view(n_masks, written, -1))  # [K, R, b/K * s * d]
        x = mixed.new_empty(n_readers, n_masks, mixed.shape[2])  # [R, K, b/K * s * d]
        torch.add(mixed.transpose(0, 1), prefix[written - 1].view(1, 1, -1), out=x)
        if record_inputs:
            inputs.append(x.view(n_readers, b, s, d).permute(1, 2, 0, 3))
        return x.view(n_readers, b, s, d)

    def project(xs: torch.Tensor, linear: torch.nn.Linear, n: int) -> torch.Tensor:  # [n, b, s, d] -> [b, n, s, dh]
        out = torch.bmm(xs.reshape(n, b * s, d), linear.weight.view(n, dh, d).transpose(1, 2))  # [n, b*s, dh]
        out = out.view(n, b, s, dh).transpose(0, 1)
        return out if linear.bias is None else out + linear.bias.view(1, n, 1, dh)

    emit(embeds[:, :, None])

    for layer, block in enumerate(model.model.layers):
        attn = block.self_attn
        first = g.reader_index(layer)
        x = block.input_layernorm(reader_input(first, g.n_heads + 2 * g.n_kv_heads))  # [H + 2 KV, b, s, d]
        xq, xk, xv = x.split([g.n_heads, g.n_kv_heads, g.n_kv_heads], dim=0)
        q = project(xq, attn.q_proj, g.n_heads)  # [b, H, s, dh]
        k = project(xk, attn.k_proj, g.n_kv_heads)  # [b, KV, s, dh]
        v = project(xv, attn.v_proj, g.n_kv_heads)  # [b, KV, s, dh]
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        k, v = k.repeat_interleave(n_rep, dim=1), v.repeat_interleave(n_rep, dim=1)  # [b, H, s, dh]
        heads = F.scaled_dot_product_attention(q, k, v, attn_mask=attend, is_causal=attend is None, scale=attn.scaling).transpose(
            1, 2
        )  # [b, s, H, dh]
        w_o = attn.o_proj.weight.view(-1, g.n_heads, dh)  # [d, H, dh]
        emit(torch.einsum("bshe,dhe->bshd", heads, w_o))  # each head's output [b, s, H, d]

        mlp_in = reader_input(first + g.readers_per_layer - 1, 1)[0]  # [b, s, d]
        emit(block.mlp(block.post_attention_layernorm(mlp_in))[:, :, None])

    final = reader_input(g.n_readers - 1, 1)[0, :, -1]  # [b, d]
    logits = model.lm_head(model.model.norm(final))  # [b, vocab]
    return EdgewiseRun(logits=logits, outputs=torch.stack(outputs, dim=2) if keep is None else None, inputs=inputs)
