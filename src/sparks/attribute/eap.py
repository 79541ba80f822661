"""EAP-IG edge and head scores with nnsight on a Hugging Face decoder (Qwen2, Llama family).

For a batch of clean/corrupted pairs of equal length, with m integration steps:

    score(u -> v) = sum_{pos} (z_u(corrupt) - z_u(clean)) . (1/m) sum_{k=1..m} dL/dx_v(alpha_k)

per pair (kept, for bootstrap resampling of circuits), where z_u is what node u writes into the residual stream, x_v is reader v's residual input and
alpha_k = k/m moves the input embeddings from corrupted (0) to clean (1). Scores are summed over
pairs here; :func:`eap_ig` divides by the number of pairs.

Where the gradients come from (one traced forward of the m interpolations stacked in the batch,
parameters frozen, one ``torch.autograd.backward``):
- q/k/v readers: the gradient at ``q_proj``/``k_proj``/``v_proj`` output, split per (KV) head,
  mapped back through that head's projection and the layer's RMSNorm. The norm's
  vector-Jacobian product is linear in the gradient, so each head gets its own exact residual
  gradient although all heads read one normalised tensor. k and v stay per KV head (GQA).
- mlp readers: the gradient at the MLP input, through ``post_attention_layernorm``.
- logits: the gradient at the final norm's output, through the final norm.
z_head is the head's slice of the ``o_proj`` input times its columns of ``o_proj.weight``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from nnsight import NNsight
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from sparks.attribute.batches import PairBatch
from sparks.attribute.graph import Graph
from sparks.attribute.metrics import Targets
from sparks.model import head_dim
from sparks.types import EdgeScores

Metric = Callable[[torch.Tensor, Targets], torch.Tensor]


def rms_norm_vjp(x: torch.Tensor, weight: torch.Tensor, eps: float, grad: torch.Tensor) -> torch.Tensor:
    """Gradient w.r.t. the input ``x`` of ``y = weight * x / rms(x)``, given ``grad`` w.r.t. ``y``.

    ``x`` [..., d] broadcasts against ``grad`` [..., d] (one x for several heads' gradients).
    """
    x = x.float()
    r = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)  # [..., 1]
    gw = grad.float() * weight.float()  # [..., d]
    return r * gw - x * r.pow(3) * (gw * x).mean(-1, keepdim=True)


class EapIg:
    """EAP-IG for one model; frozen parameters, device taken from the model. With ``edges=False``
    only the head (node) scores are computed: no reader gradients, no edge algebra."""

    def __init__(self, model: PreTrainedModel, metric: Metric, ig_steps: int = 5, edges: bool = True) -> None:
        if ig_steps < 1:
            raise ValueError(f"ig_steps must be >= 1 (got {ig_steps}); set attribute.ig_steps")
        if getattr(model.config, "use_sliding_window", False):
            raise ValueError("models with sliding-window attention are not supported by the attribution graph")
        self.model = model.eval().requires_grad_(False)
        self.traced = NNsight(self.model)
        self.graph = Graph.of(model.config)
        self.metric = metric
        self.ig_steps = ig_steps
        self.edges = edges
        cfg = model.config
        self.head_dim = head_dim(cfg)
        self.device = next(model.parameters()).device

    def _layer_weights(self, layer: int) -> dict[str, torch.Tensor]:
        attn = self.model.model.layers[layer].self_attn
        g, dh = self.graph, self.head_dim
        return {
            "q_proj": attn.q_proj.weight.float().view(g.n_heads, dh, -1),  # [H, dh, d]
            "k_proj": attn.k_proj.weight.float().view(g.n_kv_heads, dh, -1),  # [KV, dh, d]
            "v_proj": attn.v_proj.weight.float().view(g.n_kv_heads, dh, -1),  # [KV, dh, d]
            "o_proj": attn.o_proj.weight.float().view(-1, g.n_heads, dh),  # [d, H, dh]
        }

    def _corrupted_run(self, ids: torch.Tensor) -> dict:
        saved: dict = {}
        with self.traced.trace(ids, use_cache=False, logits_to_keep=1):
            saved["embed"] = self.traced.model.embed_tokens.output
            for layer in range(self.graph.n_layers):
                block = self.traced.model.layers[layer]
                saved["o", layer] = block.self_attn.o_proj.input
                if self.edges:
                    saved["mlp", layer] = block.mlp.output
        return saved

    def _ig_run(self, ids: torch.Tensor, embeds: torch.Tensor) -> tuple[dict, dict]:
        """Forward of the stacked interpolations; returns saved values and a dict the backward fills."""
        values: dict = {}
        grads: dict = {}

        def keep(key):
            return lambda grad: grads.__setitem__(key, grad)

        with self.traced.trace(ids, use_cache=False, logits_to_keep=1):
            self.traced.model.embed_tokens.output = embeds
            for layer in range(self.graph.n_layers):
                block = self.traced.model.layers[layer]
                if self.edges:
                    values["x_attn", layer] = block.input_layernorm.input
                    for proj in ("q_proj", "k_proj", "v_proj"):
                        getattr(block.self_attn, proj).output.register_hook(keep((proj, layer)))
                heads = block.self_attn.o_proj.input
                heads.register_hook(keep(("o", layer)))
                values["o", layer] = heads
                if self.edges:
                    values["x_mlp", layer] = block.post_attention_layernorm.input
                    block.mlp.input.register_hook(keep(("mlp", layer)))
                    values["mlp", layer] = block.mlp.output
            if self.edges:
                values["x_final"] = self.traced.model.norm.input
                self.traced.model.norm.output.register_hook(keep("final"))
            values["logits"] = self.traced.output.logits
        return values, grads

    def batch_scores(self, batch: PairBatch) -> EdgeScores:
        """Edge and head scores summed over the pairs of ``batch``."""
        m = self.ig_steps
        batch = batch.to(self.device)
        b, s = batch.clean_ids.shape
        corrupt = self._corrupted_run(batch.corrupt_ids)
        e_corrupt = corrupt["embed"].detach()  # [b, s, d]
        e_clean = self.model.model.embed_tokens(batch.clean_ids)  # [b, s, d]
        alphas = torch.arange(1, m + 1, device=self.device, dtype=e_clean.dtype) / m  # [m]
        embeds = e_corrupt[None] + alphas[:, None, None, None] * (e_clean - e_corrupt)[None]  # [m, b, s, d]
        embeds = embeds.reshape(m * b, s, -1).requires_grad_(True)
        values, grads = self._ig_run(batch.clean_ids.repeat(m, 1), embeds)

        logits = values["logits"][:, -1]  # [m*b, vocab]
        targets = Targets(logits[-b:].detach(), batch.clean_answer, batch.corrupt_answer)  # alpha = 1 is clean
        torch.autograd.backward(self.metric(logits, targets.repeat(m)).sum())
        if not self.edges:
            return self._head_scores(b, corrupt, values, grads)
        return self._edge_algebra(b, s, corrupt, values, grads, e_clean)

    @torch.no_grad()
    def _head_scores(self, b: int, corrupt: dict, values: dict, grads: dict) -> EdgeScores:
        """Head (node) scores only: (o(corrupt) - o(clean)) . mean_k dL/do per head."""
        g, m, dh = self.graph, self.ig_steps, self.head_dim
        heads = torch.zeros(g.n_layers, g.n_heads, device=self.device)  # [L, H]
        for layer in range(g.n_layers):
            clean = values["o", layer][-b:].detach().float()  # the alpha = 1 block is the clean run
            delta = (corrupt["o", layer].float() - clean).view(b, -1, g.n_heads, dh)  # [b, s, H, dh]
            grad = grads["o", layer].float().view(m, b, -1, g.n_heads, dh).mean(0)  # [b, s, H, dh]
            heads[layer] = torch.einsum("bshe,bshe->h", delta, grad)
        return EdgeScores(edges=None, heads=heads, n_pairs=b)

    @torch.no_grad()
    def _edge_algebra(self, b: int, s: int, corrupt: dict, values: dict, grads: dict, e_clean: torch.Tensor) -> EdgeScores:
        """Edge and head scores from the saved activations and their gradients."""
        g, m, dh = self.graph, self.ig_steps, self.head_dim
        e_corrupt = corrupt["embed"]

        def mean_over_steps(t: torch.Tensor) -> torch.Tensor:  # [m*b, ...] -> [b, ...]
            return t.float().view(m, b, *t.shape[1:]).mean(0)

        def clean(t: torch.Tensor) -> torch.Tensor:  # the alpha = 1 block is the clean run
            return t[-b:].detach().float()

        # z(corrupt) - z(clean) of every upstream node, built layer by layer
        delta = torch.zeros(b, s, g.n_upstream, e_clean.shape[-1], device=self.device)  # [b, s, n_up, d]
        delta[:, :, 0] = e_corrupt.float() - e_clean.float()
        edges = torch.zeros(b, g.n_upstream, g.n_readers, device=self.device)  # [b, n_up, n_readers]
        heads = torch.zeros(g.n_layers, g.n_heads, device=self.device)  # [L, H]
        for layer in range(g.n_layers):
            block = self.model.model.layers[layer]
            w = self._layer_weights(layer)
            ln = block.input_layernorm
            x = values["x_attn", layer][:, :, None]  # [m*b, s, 1, d]
            readers = []
            for proj, n in (("q_proj", g.n_heads), ("k_proj", g.n_kv_heads), ("v_proj", g.n_kv_heads)):
                per_head = grads[proj, layer].float().view(m * b, s, n, dh)  # [m*b, s, n, dh]
                normed = torch.einsum("nshe,hed->nshd", per_head, w[proj])  # [m*b, s, n, d]
                readers.append(mean_over_steps(rms_norm_vjp(x, ln.weight, ln.variance_epsilon, normed)))
            attn_in = torch.cat(readers, dim=2)  # [b, s, H + 2 KV, d]
            first, upstream = g.reader_index(layer), g.head_index(layer)
            edges[:, :upstream, first : first + attn_in.shape[2]] = torch.einsum(
                "bsud,bsvd->buv", delta[:, :, :upstream], attn_in
            )

            d_heads = (corrupt["o", layer].float() - clean(values["o", layer])).view(b, s, g.n_heads, dh)  # [b,s,H,dh]
            heads[layer] = torch.einsum("bshe,bshe->h", d_heads, mean_over_steps(grads["o", layer]).view(b, s, g.n_heads, dh))
            delta[:, :, upstream : upstream + g.n_heads] = torch.einsum("bshe,dhe->bshd", d_heads, w["o_proj"])

            post = block.post_attention_layernorm
            mlp_in = mean_over_steps(
                rms_norm_vjp(values["x_mlp", layer], post.weight, post.variance_epsilon, grads["mlp", layer])
            )  # [b, s, d]
            mlp = g.mlp_index(layer)
            edges[:, :mlp, first + g.readers_per_layer - 1] = torch.einsum("bsud,bsd->bu", delta[:, :, :mlp], mlp_in)
            delta[:, :, mlp] = corrupt["mlp", layer].float() - clean(values["mlp", layer])

        norm = self.model.model.norm
        final = mean_over_steps(rms_norm_vjp(values["x_final"], norm.weight, norm.variance_epsilon, grads["final"]))
        edges[:, :, -1] = torch.einsum("bsud,bsd->bu", delta, final)
        return EdgeScores(edges=edges.sum(0), heads=heads, n_pairs=b, pair_edges=edges[:, g.edge_mask.to(self.device)])


def eap_ig(model: PreTrainedModel, batches: list[PairBatch], metric: Metric, ig_steps: int = 5, edges: bool = True) -> EdgeScores:
    """EAP-IG scores averaged over all pairs of ``batches`` (ig_steps = 1 is plain EAP on the clean
    run); with ``edges=False`` head scores only (``edges`` and ``pair_edges`` are None)."""
    scorer = EapIg(model, metric, ig_steps, edges)
    g = scorer.graph
    edges = torch.zeros(g.n_upstream, g.n_readers, dtype=torch.float64)
    heads = torch.zeros(g.n_layers, g.n_heads, dtype=torch.float64)
    pair_edges = []  # [batch, n_edges] per batch
    n = 0
    bar = tqdm(batches, unit="batch", mininterval=2.0)
    for batch in bar:
        bar.set_description_str(f"EAP-IG m={ig_steps} seq {batch.clean_ids.shape[1]}", refresh=False)
        scores = scorer.batch_scores(batch)
        heads += scores.heads.double().cpu()
        if scorer.edges:
            edges += scores.edges.double().cpu()
            pair_edges.append(scores.pair_edges.cpu())
        n += scores.n_pairs
    if not scorer.edges:
        return EdgeScores(edges=None, heads=(heads / n).float(), n_pairs=n)
    return EdgeScores(edges=(edges / n).float(), heads=(heads / n).float(), n_pairs=n, pair_edges=torch.cat(pair_edges))
