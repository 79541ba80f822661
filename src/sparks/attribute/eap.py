"""EAP-IG edge and head scores with nnsight on a Hugging Face decoder (one of
``sparks.sources.SUPPORTED_MODEL_TYPES``: Qwen2, Qwen3, Llama).

For a batch of clean/corrupted pairs (each pair of one length; rows left-padded to the batch's
width when lengths differ, where both runs are identical and score nothing), with m integration steps:

    score(u -> v) = sum_{pos} (z_u(corrupt) - z_u(clean)) . (1/m) sum_{k=1..m} dL/dx_v(alpha_k)

per pair (kept, for bootstrap resampling of circuits), where z_u is what node u writes into the residual stream, x_v is reader v's residual input and
alpha_k = k/m moves the input embeddings from corrupted (0) to clean (1). Scores are summed over
pairs here; :func:`eap_ig` divides by the number of pairs.

Where the gradients come from (traced forwards of the interpolations, stacked in one batch or one
after another, parameters frozen, ``torch.autograd.backward``, hooks that sum each gradient over
the steps as it arrives):
- q/k/v readers: the gradient at ``q_proj``/``k_proj``/``v_proj`` output, split per (KV) head,
  mapped back through that head's projection and the layer's RMSNorm. The norm's
  vector-Jacobian product is linear in the gradient, so each head gets its own exact residual
  gradient although all heads read one normalised tensor. k and v stay per KV head (GQA).
  Qwen3's per-head ``q_norm``/``k_norm`` and RoPE come after the projection's output, so autograd
  carries the gradient through them to that point.
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
from sparks.attribute.metrics import Targets
from sparks.memory import DELTA_ELEMENTS
from sparks.model import folded_lm_head, head_dim
from sparks.model.graph import Graph
from sparks.sources import check_model_type
from sparks.types import EdgeScores

Metric = Callable[[torch.Tensor, Targets], torch.Tensor]
ATTENTION_INPUTS = ("q_proj", "k_proj", "v_proj")


def add_steps(sums: dict, key, value: torch.Tensor, c: int, b: int) -> None:
    """Add ``value`` [c*b, ...] (c steps of a batch of b), summed over its steps, into ``sums[key]``."""
    value = value.view(c, b, *value.shape[1:]).sum(0)
    sums[key] = sums[key] + value if key in sums else value


def rms_norm_vjp(x: torch.Tensor, weight: torch.Tensor, eps: float, grad: torch.Tensor) -> torch.Tensor:
    """Gradient w.r.t. the input ``x`` of ``y = weight * x / rms(x)``, given ``grad`` w.r.t. ``y``.

    ``x`` [..., d] broadcasts against ``grad`` [..., d] (one x for several heads' gradients).
    """
    x = x.float()
    r = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)  # [..., 1]
    gw = grad.float() * weight.float()  # [..., d]
    return r * gw - x * r.pow(3) * (gw * x).mean(-1, keepdim=True)


class EapIg:
    """EAP-IG for one model; frozen parameters, device taken from the model.

    ``edges=False`` computes the head (node) scores alone: no reader gradients, no edge algebra.
    ``stack_steps=True`` runs the m interpolations as one batch of m x b rows (fastest for small
    models and on CPU, m times the activation memory); ``False`` runs them one after another (the
    activation memory of one forward+backward of the batch, for large models).

    The backward hooks add each step's gradients into per-layer sums as they arrive, so no step's
    gradients are kept. For a q/k/v reader with output gradient g, per step, with
    ``r = rsqrt(mean(x^2) + eps)`` of the layer input x and ``out = r W (w * x) + bias`` the
    projection's output, the gradient at the residual is ``w * (W^T r g) - r^2 x (g . (out - bias)) / d``:
    the first term is linear in ``r g``, summed over steps in head space and projected once; the
    second is a rank-one term per step, kept as its coefficient and x.
    """

    DELTA_ELEMENTS = DELTA_ELEMENTS  # z(corrupt) - z(clean) numbers at once (sparks.memory bounds the buffer)

    def __init__(
        self, model: PreTrainedModel, metric: Metric, ig_steps: int = 5, edges: bool = True, stack_steps: bool = True
    ) -> None:
        if ig_steps < 1:
            raise ValueError(f"ig_steps must be >= 1 (got {ig_steps}); set attribute.ig_steps")
        check_model_type(model.config.to_dict(), f"model {model.name_or_path!r}")
        self.model = model.eval().requires_grad_(False)
        self.traced = NNsight(self.model)
        self.graph = Graph.of(model.config)
        self.metric = metric
        self.ig_steps = ig_steps
        self.edges = edges
        self.stack_steps = stack_steps
        self._hooks: list = []
        self.head_dim = head_dim(model.config)
        self.device = next(model.parameters()).device

    def batch_scores(self, batch: PairBatch) -> EdgeScores:
        """Edge and head scores summed over the pairs of ``batch``."""
        m = self.ig_steps
        batch = batch.to(self.device)
        b = len(batch)
        with folded_lm_head(self.model):
            delta = self._corrupted_run(
                batch.corrupt_ids, batch.model_inputs()
            )  # corrupted outputs, minus the clean ones once known
            e_clean = self.model.model.embed_tokens(batch.clean_ids)  # [b, s, d]
            e_corrupt = delta.pop("embed")
            delta["embed"] = e_corrupt.float() - e_clean.detach().float()
            alphas = torch.arange(m, 0, -1, device=self.device, dtype=e_clean.dtype) / m  # [m], alpha = 1 (clean) first
            sums: dict = {}
            targets = None
            chunk = m if self.stack_steps else 1
            for start in range(0, m, chunk):
                a = alphas[start : start + chunk]  # [c]
                embeds = e_corrupt[None] + a[:, None, None, None] * (e_clean - e_corrupt)[None]  # [c, b, s, d]
                embeds = embeds.reshape(-1, *e_clean.shape[1:]).requires_grad_(True)
                ids = batch.clean_ids.repeat(len(a), 1)
                logits = self._ig_pass(ids, batch.model_inputs(len(a)), embeds, b, sums, delta if start == 0 else None)
                if targets is None:  # the first rows are alpha = 1, the clean run
                    targets = Targets(logits[:b].detach(), batch.clean_answer, batch.corrupt_answer)
                torch.autograd.backward(self.metric(logits, targets.repeat(len(a))).sum())
                for handle in self._hooks:  # a hook holds the tensor it sits on: a cycle only gc would free
                    handle.remove()
                self._hooks.clear()
        return self._scores(b, delta, sums)

    def _corrupted_run(self, ids: torch.Tensor, padding: dict) -> dict:
        saved: dict = {}
        with self.traced.trace(ids, use_cache=False, logits_to_keep=1, **padding):
            saved["embed"] = self.traced.model.embed_tokens.output
            for layer in range(self.graph.n_layers):
                block = self.traced.model.layers[layer]
                saved["o", layer] = block.self_attn.o_proj.input
                if self.edges:
                    saved["mlp", layer] = block.mlp.output
        return saved

    def _ig_pass(
        self, ids: torch.Tensor, padding: dict, embeds: torch.Tensor, b: int, sums: dict, delta: dict | None
    ) -> torch.Tensor:
        """Forward of c stacked interpolations ([c*b, s] rows; ``padding`` their attention mask and
        position ids, if any) with hooks that add their gradients into
        ``sums`` during the backward; returns the last-position logits [c*b, vocab]. Given ``delta``
        (on the first pass, whose first b rows are the clean run), its corrupted outputs become
        corrupted minus clean."""

        def minus_clean(key, clean: torch.Tensor) -> None:
            if delta is not None:
                delta[key] = delta[key].float() - clean[:b].detach().float()

        c = ids.shape[0] // b
        out: dict = {}

        def add(key, value: torch.Tensor) -> None:
            add_steps(sums, key, value, c, b)

        def step_sum(key):
            return lambda grad: add(key, grad.float())

        def hook(tensor: torch.Tensor, fn) -> None:
            self._hooks.append(tensor.register_hook(fn))

        def through_norm(key, x, norm):  # reader gradient at the residual, through an RMSNorm
            return lambda grad: add(key, rms_norm_vjp(x.detach(), norm.weight, norm.variance_epsilon, grad))

        with self.traced.trace(ids, use_cache=False, logits_to_keep=1, **padding):
            self.traced.model.embed_tokens.output = embeds
            for layer in range(self.graph.n_layers):  # in the order the forward reaches them
                block = self.traced.model.layers[layer]
                module = self.model.model.layers[layer]
                if self.edges:
                    x = block.input_layernorm.input
                    out["x", layer] = x
                    for proj in ATTENTION_INPUTS:
                        y = getattr(block.self_attn, proj).output
                        hook(y, self._reader_hook(layer, proj, x, y, c, b, sums))
                heads = block.self_attn.o_proj.input
                hook(heads, step_sum(("o", layer)))
                minus_clean(("o", layer), heads)
                if not self.edges:
                    continue
                x_mlp = block.post_attention_layernorm.input
                hook(block.mlp.input, through_norm(("mlp_in", layer), x_mlp, module.post_attention_layernorm))
                minus_clean(("mlp", layer), block.mlp.output)
            if self.edges:
                x_final = self.traced.model.norm.input
                hook(self.traced.model.norm.output, through_norm("final", x_final, self.model.model.norm))
            out["logits"] = self.traced.output.logits
        for layer in range(self.graph.n_layers if self.edges else 0):  # layer inputs of every step, for the rank-one terms
            sums.setdefault(("x", layer), []).append(out["x", layer].detach().view(c, b, *out["x", layer].shape[1:]))
        return out["logits"][:, -1]

    def _reader_hook(self, layer: int, proj: str, x: torch.Tensor, y: torch.Tensor, c: int, b: int, sums: dict):
        module = getattr(self.model.model.layers[layer].self_attn, proj)
        eps = self.model.model.layers[layer].input_layernorm.variance_epsilon

        @torch.no_grad()
        def hook(grad: torch.Tensor) -> None:
            xs = x.detach().float()  # [c*b, s, d]
            r = torch.rsqrt(xs.pow(2).mean(-1) + eps)  # [c*b, s]
            g = grad.float().unflatten(-1, (-1, self.head_dim))  # [c*b, s, n, dh]
            bias = 0 if module.bias is None else module.bias.float().view(-1, self.head_dim)
            coefficient = r.pow(2)[..., None] * (g * (y.detach().float().unflatten(-1, (-1, self.head_dim)) - bias)).sum(-1)
            add_steps(sums, (proj, layer), g * r[..., None, None], c, b)  # [b, s, n, dh]
            sums.setdefault((proj, "rank_one", layer), []).append(coefficient.div(xs.shape[-1]).view(c, b, *r.shape[1:], -1))

        return hook

    @torch.no_grad()
    def _scores(self, b: int, delta: dict, sums: dict) -> EdgeScores:
        g, m, dh = self.graph, self.ig_steps, self.head_dim
        heads = torch.zeros(g.n_layers, g.n_heads, device=self.device)  # [L, H]
        for layer in range(g.n_layers):
            grad = sums["o", layer].unflatten(-1, (g.n_heads, dh)) / m  # step mean, [b, s, H, dh]
            heads[layer] = torch.einsum("bshe,bshe->h", delta["o", layer].unflatten(-1, (g.n_heads, dh)), grad)
        if not self.edges:
            return EdgeScores(edges=None, heads=heads, n_pairs=b)
        for key, value in sums.items():
            if isinstance(value, list):  # per-chunk pieces of the m steps: [m, b, ...]
                sums[key] = torch.cat(value)
        s, d = delta["embed"].shape[1:]
        rows = max(1, self.DELTA_ELEMENTS // (g.n_upstream * d))  # (pair, position) rows of z at once, stacked or not
        n_pairs, n_positions = max(1, rows // s), min(s, rows)  # whole pairs while they fit, else positions of one
        edges = torch.zeros(b, g.n_upstream, g.n_readers, device=self.device)
        for i in range(0, b, n_pairs):
            for j in range(0, s, n_positions):
                edges[i : i + n_pairs] += self._pair_edges(slice(i, i + n_pairs), slice(j, j + n_positions), delta, sums)
        return EdgeScores(edges=edges.sum(0), heads=heads, n_pairs=b, pair_edges=edges[:, g.edge_mask.to(self.device)])

    def _pair_edges(self, pairs: slice, positions: slice, delta: dict, sums: dict) -> torch.Tensor:
        """Edge scores [p, n_up, n_readers] of some pairs, summed over some positions: the rows of
        ``z`` [p, n_up, s, d], z(corrupt) - z(clean) of every upstream node, against each reader's
        step-mean residual gradient. Every term is a sum over positions, so positions can be split."""
        g, m, dh = self.graph, self.ig_steps, self.head_dim
        at = (pairs, positions)
        first = delta["embed"][at]
        p, s, d = first.shape
        z = torch.empty(p, g.n_upstream, s, d, device=self.device)  # every row is written before it is read
        z[:, 0] = first
        edges = torch.zeros(p, g.n_upstream, g.n_readers, device=self.device)

        def into(readers: torch.Tensor, upstream: int) -> torch.Tensor:  # [p, n, s, d] -> [p, upstream, n]
            return torch.bmm(z[:, :upstream].reshape(p, upstream, s * d), readers.reshape(p, -1, s * d).transpose(1, 2))

        for layer in range(g.n_layers):
            block = self.model.model.layers[layer]
            attn = block.self_attn
            x = sums["x", layer][:, pairs, positions].float()  # [m, p, s, d]
            readers = []
            for proj in ATTENTION_INPUTS:
                weight = getattr(attn, proj).weight.float().view(-1, dh, d)  # [n, dh, d]
                linear = torch.einsum("psne,ned->pnsd", sums[proj, layer][at], weight) * block.input_layernorm.weight.float()
                readers.append(linear - torch.einsum("kpsn,kpsd->pnsd", sums[proj, "rank_one", layer][:, pairs, positions], x))
            start, upstream = g.reader_index(layer), g.head_index(layer)
            edges[:, :upstream, start : start + g.readers_per_layer - 1] = into(torch.cat(readers, dim=1) / m, upstream)
            o_weight = attn.o_proj.weight.float().view(d, g.n_heads, dh).permute(1, 2, 0)  # [H, dh, d]
            d_out = delta["o", layer][at].unflatten(-1, (g.n_heads, dh)).permute(2, 0, 1, 3).reshape(g.n_heads, p * s, dh)
            z[:, upstream : upstream + g.n_heads] = torch.bmm(d_out, o_weight).view(g.n_heads, p, s, d).transpose(0, 1)
            mlp = g.mlp_index(layer)
            edges[:, :mlp, start + g.readers_per_layer - 1] = into(sums["mlp_in", layer][at][:, None] / m, mlp)[..., 0]
            z[:, mlp] = delta["mlp", layer][at]
        edges[:, :, -1] = into(sums["final"][at][:, None] / m, g.n_upstream)[..., 0]
        return edges


def eap_ig(
    model: PreTrainedModel,
    batches: list[PairBatch],
    metric: Metric,
    ig_steps: int = 5,
    edges: bool = True,
    stack_steps: bool = True,
) -> EdgeScores:
    """EAP-IG scores averaged over all pairs of ``batches`` (ig_steps = 1 is plain EAP on the clean
    run); with ``edges=False`` head scores only (``edges`` and ``pair_edges`` are None); ``stack_steps``
    as in :class:`EapIg`."""
    scorer = EapIg(model, metric, ig_steps, edges, stack_steps)
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


def score(model: PreTrainedModel, batches: list[PairBatch], metric: Metric, settings, edges: bool = True) -> EdgeScores:
    """EAP-IG as an attribution method (sparks.methods: ``eap_ig``), with the attribute section's
    integration steps and batching of steps."""
    return eap_ig(model, batches, metric, settings.ig_steps, edges=edges, stack_steps=settings.stack_ig_steps)
