"""Head-restricted training: let only some attention heads learn, or keep some heads fixed.

Query head ``h`` of layer ``l`` (named ``a{l}.h{h}``, EAP-IG's convention) owns rows
``h*d:(h+1)*d`` of ``q_proj.weight`` and ``q_proj.bias`` (its query projection) and columns
``h*d:(h+1)*d`` of ``o_proj.weight`` (its share of the output projection; Qwen2's o_proj has no
bias), ``d`` being the head width. :func:`restrict_updates` lets exactly the chosen slices
change: a parameter with nothing trainable gets ``requires_grad=False`` (so the Trainer's
optimizer never holds it), and a parameter that is partly trainable gets a gradient hook that
zeroes its frozen entries.

Why the frozen entries stay bit-identical, checked by tests/test_head_training.py: their gradient
is exactly 0 at every step, so Adam's moments stay 0 and its update is ``0 / (sqrt(0) + eps) = 0``
(torch's AdamW, fused or not); gradient clipping scales a 0 to a 0; gradient accumulation sums
zeros. What would move them is weight decay, which AdamW applies to every entry of a parameter
it holds, gradient or not: TRL's default is 0 and sparks sets none, so :func:`restrict_trainer`
refuses a trainer with ``weight_decay > 0``. Tied embeddings (``tie_word_embeddings``) are one
parameter shared by the embedding and the LM head, frozen or trained together.

Grouped-query attention: the rows of ``k_proj``/``v_proj`` (and their biases) belong to a KV head
shared by a group of ``n_heads / n_kv_heads`` query heads. Training a list of heads never trains a
KV head, even one whose whole group is listed: only the named query heads' q rows and o columns
move. Freezing a list of heads freezes a KV head only when every query head of its group is
frozen; otherwise the group's other heads still train it. Attention parameters shared by all of a
layer's heads (Qwen3's ``q_norm`` and ``k_norm``, an o_proj bias) follow the same rules at the
layer's level: a train list never trains them, a freeze list freezes them when it holds the whole layer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from sparks.types import check_heads, parse_heads

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Restriction:
    """What :func:`restrict_updates` did: its gradient hooks and how many weights can change."""

    handles: tuple[torch.utils.hooks.RemovableHandle, ...]
    trainable: int  # weights (tensor entries) that receive updates
    total: int  # all weights of the model (tied ones once)

    def remove(self) -> None:
        """Drop the gradient hooks (``requires_grad`` stays as set)."""
        for handle in self.handles:
            handle.remove()


def restrict_updates(
    model: torch.nn.Module, train: Iterable[str] | None = None, freeze: Iterable[str] | None = None, key: str = "heads"
) -> Restriction:
    """Restrict ``model``'s updates to the heads in ``train`` (everything else frozen), or to all
    but the heads in ``freeze`` (see the module docstring for what a head owns and the GQA rule).
    Give exactly one list. ``key`` names the config key in errors. Call it before the optimizer
    is made: parameters it freezes wholly must not be handed to the optimizer."""
    if (train is None) == (freeze is None):
        raise ValueError("restrict_updates takes exactly one of train= and freeze= (a list of head names)")
    training = train is not None
    config = model.config
    n_layers, n_heads, n_kv = config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads
    heads = parse_heads(train if training else freeze, key)
    check_heads(heads, n_layers, n_heads, key)
    listed = torch.zeros(n_layers, n_heads, dtype=torch.bool)  # [layer, head]
    for head in heads:
        listed[head.layer, head.head] = True
    learns = listed if training else ~listed  # [layer, head]: the query head's slices change
    masks = {}  # id(parameter) -> bool mask of the entries that may change (absent: the default)
    for layer, block in enumerate(model.model.layers):
        q = learns[layer]  # [n_heads]
        kv = torch.zeros(n_kv, dtype=torch.bool) if training else q.view(n_kv, -1).any(dim=1)  # [n_kv]
        shared = not training and bool(q.any())  # layer-wide attention parameters (q_norm, k_norm)
        for name, param in block.self_attn.named_parameters():
            masks[id(param)] = _mask(name, param, q, kv, shared)
    handles, trainable, total = [], 0, 0
    for param in model.parameters():  # tied parameters once
        mask = masks.get(id(param), not training)
        total += param.numel()
        if isinstance(mask, bool) or bool(mask.all()) or not mask.any():
            learns_all = mask if isinstance(mask, bool) else bool(mask.all())
            param.requires_grad_(learns_all)
            trainable += param.numel() * learns_all
            continue
        param.requires_grad_(True)
        handles.append(param.register_hook(partial(_zero_frozen, ~mask)))
        trainable += int(mask.sum())
    return Restriction(tuple(handles), trainable, total)


def _mask(name: str, param: torch.Tensor, q: torch.Tensor, kv: torch.Tensor, shared: bool) -> torch.Tensor | bool:
    """The entries of attention parameter ``name`` that may change, from which query heads (``q``,
    [n_heads]) and KV heads (``kv``, [n_kv]) learn; a parameter no single head owns takes ``shared``."""
    proj = name.split(".")[0]
    if proj == "q_proj" or (proj == "o_proj" and name.endswith("weight")):
        owner = q
    elif proj in ("k_proj", "v_proj"):
        owner = kv
    else:
        return shared
    width = param.shape[1] if proj == "o_proj" else param.shape[0]
    rows = owner.repeat_interleave(width // len(owner)).to(param.device)  # [n_heads * head_dim] or [n_kv * head_dim]
    if proj == "o_proj":
        return rows.expand_as(param)  # columns: the o_proj input is the heads' outputs side by side
    return rows if param.dim() == 1 else rows[:, None].expand_as(param)


def _zero_frozen(frozen: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    return grad.masked_fill(frozen.to(grad.device), 0)  # a fill, not a product: a NaN gradient stays out too


def restrict_trainer(trainer: Any, heads: list[str] | None, key: str) -> Restriction | None:
    """Restrict a TRL trainer's model to train only ``heads`` (a run's ``train_heads``; None leaves
    it whole), before ``trainer.train()`` makes the optimizer; logs the trainable share."""
    if heads is None:
        return None
    if trainer.args.weight_decay:
        raise ValueError(
            f"{key} with weight_decay = {trainer.args.weight_decay}: AdamW decays every entry of the q_proj and "
            "o_proj tensors the named heads share with frozen heads, gradient or not; remove weight_decay from "
            "the run's trainer section"
        )
    restriction = restrict_updates(trainer.model, train=heads, key=key)
    log.info(
        "%s = %s: %d of %d weights trainable (%.3f %%), the rest stay as at step 0",
        key,
        ", ".join(heads),
        restriction.trainable,
        restriction.total,
        100 * restriction.trainable / restriction.total,
    )
    return restriction
