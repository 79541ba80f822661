"""A decoder's forward pass in plain PyTorch, node by node, where every reader's input is
built from the upstream nodes' outputs: the engine for edge patching (faithfulness) and an
independent reference for the EAP-IG gradients (each reader's input is a tensor of its own).
It rebuilds the architectures of ``sparks.sources.SUPPORTED_MODEL_TYPES`` (Qwen2, Qwen3, Llama),
which share RMSNorm pre-norm blocks and rotate-half RoPE; Qwen3 also normalises each head's
query and key (``q_norm``/``k_norm``) before RoPE, and an ``o_proj`` bias (Llama's and Qwen3's
``attention_bias``) is shared out equally among the layer's heads.

With ``keep`` (a [n_upstream, n_readers] mask) and the corrupted run's node outputs, reader v
receives ``sum_u keep[u,v] * z_u + (1 - keep[u,v]) * z_u(corrupt)``: every edge outside the
circuit carries its corrupted activation. Without them it is the model's ordinary forward.
Several circuits run in one pass with a stack of masks [K, n_upstream, n_readers] and the
embeddings repeated K times (circuit-major: rows k*b .. (k+1)*b - 1 run circuit k).

A node none of whose readers receives a kept edge from a changed node (the embeddings, or a node
that changed) writes its corrupted output exactly, and is not computed: small circuits change
few layers, so most of their pass is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel
from transformers.models.qwen2.modeling_qwen2 import apply_rotary_pos_emb  # Llama's and Qwen3's are the same code

from sparks.attribute.batches import position_ids
from sparks.model import head_dim
from sparks.model.graph import Graph


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
    batch whose corrupted outputs are ``corrupt_outputs`` [batch / K, pos, U, d]): see
    :func:`run_patched`. Without ``record_inputs`` the readers' inputs are not kept (``inputs``
    is empty), which saves memory."""
    if (keep is None) != (corrupt_outputs is None):
        raise ValueError("pass keep and corrupt_outputs together (patching needs both) or neither")
    if keep is not None:
        return run_patched(model, embeds, keep, corrupt_outputs, mask)
    g = Graph.of(model.config)
    attention = LayerAttention(model, embeds, mask)
    outputs: list[torch.Tensor] = [embeds]  # each [b, s, d]
    inputs: list[torch.Tensor] = []

    def reader_input(n_readers: int) -> torch.Tensor:  # -> [b, s, R, d]
        x = torch.stack(outputs, dim=2).sum(2, keepdim=True).expand(-1, -1, n_readers, -1)
        if record_inputs:
            inputs.append(x)
        return x

    for layer, block in enumerate(model.model.layers):
        x = block.input_layernorm(reader_input(g.n_heads + 2 * g.n_kv_heads).permute(2, 0, 1, 3))  # [H + 2 KV, b, s, d]
        outputs.extend(attention(layer, x).unbind(2))
        mlp_in = reader_input(1)[:, :, 0]  # [b, s, d]
        outputs.append(block.mlp(block.post_attention_layernorm(mlp_in)))
    final = reader_input(1)[:, -1, 0]  # [b, d]
    logits = model.lm_head(model.model.norm(final))  # [b, vocab]
    return EdgewiseRun(logits=logits, outputs=torch.stack(outputs, dim=2), inputs=inputs)


@torch.no_grad()
def run_patched(
    model: PreTrainedModel,
    embeds: torch.Tensor,
    keep: torch.Tensor,
    corrupt_outputs: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> EdgewiseRun:
    """Patched run of one circuit ``keep`` [U, R] or a stack [K, U, R] over ``embeds`` (K copies of
    the batch, circuit-major), given the corrupted run's node outputs ``corrupt_outputs``
    [batch / K, pos, U, d]; returns the logits alone.

    Each reader's input is the corrupted residual stream plus the kept edges' differences,
    ``sum_u c_u + sum_u keep[u,v] (z_u - c_u)``: one batched matrix product per reader group over
    a buffer of differences, instead of restacking every upstream output for every reader. A node
    is computed only for the circuits in which one of its readers gets a kept edge from a changed
    node; elsewhere its difference is exactly 0. Circuits are skipped as a contiguous range (the
    first to the last that changes a layer), so nested circuits given in order of size, as the
    faithfulness curve gives them, skip without copying."""
    g = Graph.of(model.config)
    masks = (keep if keep.dim() == 3 else keep[None]).bool()  # [K, U, R]
    n_masks = len(masks)
    b, s, d = embeds.shape
    if b % n_masks:
        raise ValueError(f"a patched run of {n_masks} circuits needs the batch repeated {n_masks} times (got {b} rows)")
    copy = b // n_masks
    weights = masks.to(embeds.dtype)
    attention = LayerAttention(model, embeds, mask)
    corrupt = corrupt_outputs.permute(2, 0, 1, 3).contiguous()  # [U, b/K, s, d]
    prefix = corrupt.cumsum(0)  # [U, b/K, s, d]: the corrupted residual stream after each node
    deltas = embeds.new_empty(n_masks, g.n_upstream, copy, s, d)  # [K, U, b/K, s, d]: z_u - c_u
    deltas[:, 0] = embeds.view(n_masks, copy, s, d) - corrupt[0]
    changed = torch.zeros(n_masks, g.n_upstream, dtype=torch.bool, device=embeds.device)
    changed[:, 0] = True
    written = 1
    groups = torch.tensor([g.kv_head(h) for h in range(g.n_heads)], device=embeds.device)  # each head's KV head

    def live(first_reader: int, n_readers: int) -> torch.Tensor:  # [K, R]: readers given a kept edge from a changed node
        return (masks[:, :written, first_reader : first_reader + n_readers] & changed[:, :written, None]).any(1)

    def reader_input(circuits: slice, first_reader: int, n_readers: int) -> torch.Tensor:  # -> [R, k * b/K, s, d]
        k = weights[circuits, :written, first_reader : first_reader + n_readers]  # [k, W, R]
        mixed = torch.bmm(k.transpose(1, 2), deltas[circuits, :written].view(len(k), written, -1))  # [k, R, b/K * s * d]
        x = mixed.new_empty(n_readers, len(k), mixed.shape[2])
        torch.add(mixed.transpose(0, 1), prefix[written - 1].view(1, 1, -1), out=x)
        return x.view(n_readers, len(k) * copy, s, d)

    def emit(node_changed: torch.Tensor, compute) -> None:  # node_changed [K, n]; compute(circuits) -> [k*b/K, s, n, d]
        nonlocal written
        n = node_changed.shape[1]
        nodes = slice(written, written + n)
        hit = node_changed.any(1).nonzero().flatten().tolist() or [n_masks]
        circuits = slice(hit[0], hit[-1] + 1)
        deltas[: circuits.start, nodes] = 0
        deltas[circuits.stop :, nodes] = 0
        if circuits.start < n_masks:
            z = compute(circuits).view(-1, copy, s, n, d).permute(0, 3, 1, 2, 4)  # [k, n, b/K, s, d]
            torch.sub(z, corrupt[nodes], out=deltas[circuits, nodes])
            if not node_changed[circuits].all():
                deltas[circuits, nodes] *= node_changed[circuits, :, None, None, None]
        changed[:, nodes] = node_changed
        written += n

    for layer, block in enumerate(model.model.layers):
        first = g.reader_index(layer)
        readers = live(first, g.n_heads + 2 * g.n_kv_heads)  # [K, H + 2 KV]
        kv = readers[:, g.n_heads :].view(n_masks, 2, g.n_kv_heads).any(1)  # [K, KV]
        heads_changed = readers[:, : g.n_heads] | kv[:, groups]  # [K, H]

        def heads(circuits: slice, layer=layer, block=block, first=first) -> torch.Tensor:
            x = block.input_layernorm(reader_input(circuits, first, g.n_heads + 2 * g.n_kv_heads))
            return attention(layer, x, rows=slice(circuits.start * copy, circuits.stop * copy))

        emit(heads_changed, heads)
        mlp = first + g.readers_per_layer - 1

        def mlp_out(circuits: slice, block=block, mlp=mlp) -> torch.Tensor:
            return block.mlp(block.post_attention_layernorm(reader_input(circuits, mlp, 1)[0]))[:, :, None]

        emit(live(mlp, 1), mlp_out)
    final = reader_input(slice(None), g.n_readers - 1, 1)[0, :, -1]  # [b, d]
    logits = model.lm_head(model.model.norm(final))  # [b, vocab]
    return EdgewiseRun(logits=logits, outputs=None, inputs=[])


class LayerAttention:
    """One layer's heads from their readers' (normalised) inputs, for the rows of a batch: RoPE
    positions and the attention mask are set up once per pass."""

    def __init__(self, model: PreTrainedModel, embeds: torch.Tensor, mask: torch.Tensor | None) -> None:
        self.model = model
        self.g = Graph.of(model.config)
        self.dh = head_dim(model.config)
        b, s, _ = embeds.shape
        if mask is None:
            positions = torch.arange(s, device=embeds.device)[None].expand(b, s)
            self.attend = None
        else:
            positions = position_ids(mask)
            causal = torch.ones(s, s, dtype=torch.bool, device=embeds.device).tril()
            eye = torch.eye(s, dtype=torch.bool, device=embeds.device)
            self.attend = (causal & mask.bool()[:, None, None, :]) | eye  # [b, 1, s, s]
        self.cos, self.sin = model.model.rotary_emb(embeds, positions)  # [b, s, dh] each

    def __call__(self, layer: int, x: torch.Tensor, rows: slice = slice(None)) -> torch.Tensor:
        """Heads' outputs [r, s, H, d] of ``layer`` from its readers' inputs ``x`` [H + 2 KV, r, s, d]
        (q of each head, k and v of each KV head, normalised) for the batch's ``rows``."""
        g, dh = self.g, self.dh
        attn = self.model.model.layers[layer].self_attn
        xq, xk, xv = x.split([g.n_heads, g.n_kv_heads, g.n_kv_heads], dim=0)
        q = self._project(xq, attn.q_proj)  # [r, H, s, dh]
        k = self._project(xk, attn.k_proj)  # [r, KV, s, dh]
        v = self._project(xv, attn.v_proj)  # [r, KV, s, dh]
        if hasattr(attn, "q_norm"):  # Qwen3: RMSNorm over each head's dh, before RoPE
            q, k = attn.q_norm(q), attn.k_norm(k)
        q, k = apply_rotary_pos_emb(q, k, self.cos[rows], self.sin[rows])
        n_rep = g.n_heads // g.n_kv_heads
        k, v = k.repeat_interleave(n_rep, dim=1), v.repeat_interleave(n_rep, dim=1)  # [r, H, s, dh]
        attend = None if self.attend is None else self.attend[rows]
        heads = F.scaled_dot_product_attention(q, k, v, attn_mask=attend, is_causal=attend is None, scale=attn.scaling)
        w_o = attn.o_proj.weight.view(-1, g.n_heads, dh)  # [d, H, dh]
        out = torch.einsum("bhse,dhe->bshd", heads, w_o)  # each head's output [r, s, H, d]
        if attn.o_proj.bias is not None:  # the same in every run, so any split is exact: each head writes 1/H
            out = out + attn.o_proj.bias / g.n_heads
        return out

    def _project(self, xs: torch.Tensor, linear: torch.nn.Linear) -> torch.Tensor:  # [n, r, s, d] -> [r, n, s, dh]
        n, r, s, d = xs.shape
        out = torch.bmm(xs.reshape(n, r * s, d), linear.weight.view(n, self.dh, d).transpose(1, 2))  # [n, r*s, dh]
        out = out.view(n, r, s, self.dh).transpose(0, 1)
        return out if linear.bias is None else out + linear.bias.view(1, n, 1, self.dh)
