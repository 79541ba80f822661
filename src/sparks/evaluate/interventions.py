"""Interventions on attention heads' outputs (the head's slice of the ``o_proj`` input) while a
model runs or generates: ablation (replace by the head's mean output over the task's prompts, or
by zero) and scaling (multiply by alpha). Hooks are plain PyTorch forward pre-hooks, active only
inside the ``intervene`` context, so generation with the KV cache sees them at every step."""

from __future__ import annotations

import random
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import polars as pl
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sparks.model import head_dim
from sparks.registry import ABLATIONS, CONTROLS
from sparks.types import HeadId

KINDS = ("ablate", "scale")


@dataclass(frozen=True)
class HeadIntervention:
    kind: str  # ablate | scale
    heads: tuple[HeadId, ...]
    alpha: float = 1.0  # scale only
    ablation: str = "mean"  # ablate only: mean | zero
    means: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> [n_heads * d_head] mean o_proj input

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"intervention kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.kind == "ablate" and self.ablation not in ABLATIONS:
            raise ValueError(f"ablation {self.ablation!r} is not one of {', '.join(ABLATIONS)}")
        if self.kind == "ablate" and self.ablation == "mean" and not {h.layer for h in self.heads} <= set(self.means):
            raise ValueError("mean ablation needs the mean o_proj input of every layer it touches (see head_means)")


@contextmanager
def intervene(model: PreTrainedModel, intervention: HeadIntervention | None) -> Iterator[None]:
    """Apply ``intervention`` to every forward of ``model`` inside the block (None: no change)."""
    if intervention is None or not intervention.heads:
        yield
        return
    dh = head_dim(model.config)
    by_layer: dict[int, list[int]] = {}
    for head in intervention.heads:
        by_layer.setdefault(head.layer, []).append(head.head)
    handles = []

    def hook_for(layer: int, heads: list[int]):
        cols = torch.cat([torch.arange(h * dh, (h + 1) * dh) for h in heads])  # [len(heads) * dh]

        def hook(module, args):
            x = args[0].clone()  # [batch, pos, n_heads * dh]
            idx = cols.to(x.device)
            if intervention.kind == "scale":
                x[..., idx] = x[..., idx] * intervention.alpha
            elif intervention.ablation == "zero":
                x[..., idx] = 0
            else:
                x[..., idx] = intervention.means[layer].to(x.device, x.dtype)[idx]
            return (x, *args[1:])

        return hook

    try:
        for layer, heads in by_layer.items():
            o_proj = model.model.layers[layer].self_attn.o_proj
            handles.append(o_proj.register_forward_pre_hook(hook_for(layer, heads)))
        yield
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def head_means(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], batch_size: int = 64
) -> dict[int, torch.Tensor]:
    """layer -> mean o_proj input over every (non-padding) token of ``prompts``."""
    device = next(model.parameters()).device
    sums: dict[int, torch.Tensor] = {}
    count = 0
    mask_holder: dict[str, torch.Tensor] = {}

    def collect(layer: int):
        def hook(module, args):
            mask = mask_holder["mask"][..., None].to(args[0].dtype)  # [batch, pos, 1]
            sums[layer] = sums.get(layer, 0) + (args[0] * mask).sum((0, 1))

        return hook

    handles = [layer.self_attn.o_proj.register_forward_pre_hook(collect(i)) for i, layer in enumerate(model.model.layers)]
    try:
        for start in range(0, len(prompts), batch_size):
            batch = tokenizer(list(prompts[start : start + batch_size]), return_tensors="pt", padding=True).to(device)
            mask_holder["mask"] = batch["attention_mask"]
            model(**batch, use_cache=False)
            count += int(batch["attention_mask"].sum())
    finally:
        for handle in handles:
            handle.remove()
    return {layer: total / count for layer, total in sums.items()}


def control_heads(
    control: str,
    heads: Sequence[HeadId],
    cohorts: pl.DataFrame,
    n_layers: int,
    n_heads: int,
    seed: int | str,
    active: Collection[HeadId] = (),
) -> tuple[HeadId, ...]:
    """One draw of a control (a name in ``sparks.registry.CONTROLS``) for the intervened ``heads``
    (the emergent ones, or ``evaluate.heads``), as many heads as they are and never one of them:
    ``same_layer`` random heads of their layers (which may belong to the starting model's
    circuit); ``base_circuit`` heads active in the starting model's circuit (the cohorts table's
    heads without a cohort step); ``outside`` heads in no circuit of the run: none of ``active``
    (the heads active at any checkpoint, of any replicate for a robust set) nor of the cohorts
    table. ``seed`` (use :func:`draw_seed`) makes the draw; a pool smaller than needed gives all it has."""
    if control == "same_layer":
        return random_heads_like(heads, n_heads, seed, exclude=heads)
    if control not in CONTROLS:
        raise ValueError(f"control {control!r} is not one of {', '.join(CONTROLS)}")
    rows = cohorts.select("layer", "head", "cohort_step").rows()
    if control == "base_circuit":
        pool = {HeadId(layer, head) for layer, head, cohort in rows if cohort is None}
    else:
        every = {HeadId(layer, head) for layer in range(n_layers) for head in range(n_heads)}
        pool = every - {HeadId(layer, head) for layer, head, _ in rows} - set(active)
    pool -= set(heads)
    return tuple(sorted(random.Random(seed).sample(sorted(pool), min(len(heads), len(pool)))))


def draw_seed(run_seed: int | None, base_seed: int | None, draw: int) -> str:
    """The seed of a control's ``draw`` in a run: its replicate's trainer and base seeds and the
    draw index, so that every replicate draws its own control heads (a string: Python's
    ``random`` seeds it the same in every process)."""
    return f"run{run_seed}-base{base_seed}-draw{draw}"


def random_heads_like(
    heads: Sequence[HeadId], n_heads: int, seed: int | str, exclude: Sequence[HeadId] = ()
) -> tuple[HeadId, ...]:
    """As many random heads as ``heads``, from the same layers, none of ``exclude`` (the control)."""
    rng = random.Random(seed)
    banned = set(exclude) | set(heads)
    chosen: list[HeadId] = []
    for layer in sorted({h.layer for h in heads}):
        need = sum(h.layer == layer for h in heads)
        pool = [HeadId(layer, h) for h in range(n_heads) if HeadId(layer, h) not in banned]
        if len(pool) < need:
            pool = [HeadId(layer, h) for h in range(n_heads) if HeadId(layer, h) not in set(heads)]
        chosen += rng.sample(pool, min(need, len(pool)))
    return tuple(chosen)
