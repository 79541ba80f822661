"""Head policies while training: let only some attention heads learn, keep some heads fixed, or
anchor some heads' outputs to the starting model's (:class:`HeadPolicy`, applied to a TRL trainer
by :func:`apply_head_policy`; the anchor is :mod:`sparks.train.anchor`).

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
it holds, gradient or not: TRL's default is 0 and sparks sets none, so :func:`apply_head_policy`
refuses to freeze or restrict heads of a trainer with ``weight_decay > 0``. Tied embeddings
(``tie_word_embeddings``) are one parameter shared by the embedding and the LM head, frozen or
trained together.

Grouped-query attention: the rows of ``k_proj``/``v_proj`` (and their biases) belong to a KV head
shared by a group of ``n_heads / n_kv_heads`` query heads. Training a list of heads
(``train_only``) never trains a KV head, even one whose whole group is listed: only the named
query heads' q rows and o columns move. Freezing a list of heads (``freeze``) freezes a KV head
only when every query head of its group is frozen; otherwise the group's other heads still train it. Attention parameters shared by all of a
layer's heads (Qwen3's ``q_norm`` and ``k_norm``, an o_proj bias) follow the same rules at the
layer's level: a train list never trains them, a freeze list freezes them when it holds the whole layer.

An anchor restricts nothing: its penalty's gradient reaches what lies upstream of the anchored heads'
outputs (their q rows, their KV group's k/v rows, the layers below, the embeddings), and a freeze or
train_only policy given with it still decides which of those entries move.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from sparks.train.anchor import ActivationAnchor, install_anchor
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
    if trainable == 0:  # an empty train list: one parameter stays in the optimizer, its gradient always 0
        first = next(model.parameters())
        first.requires_grad_(True)
        handles.append(first.register_hook(partial(_zero_frozen, torch.ones_like(first, dtype=torch.bool))))
        log.warning("%s trains no head: every weight stays as at step 0 (the run's checkpoints equal its start)", key)
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


@dataclass(frozen=True)
class HeadPolicy:
    """What a training run does with attention heads (names ``a{layer}.h{head}``): ``freeze`` keeps
    the named heads fixed, ``train_only`` trains nothing else (give at most one of the two), and
    ``anchor`` adds ``anchor_weight`` x the activation-anchoring penalty of those heads to the loss
    (:mod:`sparks.train.anchor`; nothing when ``anchor_weight`` is 0). Lists become tuples."""

    freeze: tuple[str, ...] | None = None
    train_only: tuple[str, ...] | None = None
    anchor: tuple[str, ...] | None = None
    anchor_weight: float = 0.0

    def __post_init__(self) -> None:
        for name in ("freeze", "train_only", "anchor"):
            value = getattr(self, name)
            if isinstance(value, str):  # one head
                object.__setattr__(self, name, (value,))
            elif value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))


@dataclass(frozen=True)
class HeadTraining:
    """What :func:`apply_head_policy` did to a trainer."""

    restriction: Restriction | None  # the gradient hooks of freeze / train_only; None: every weight trains
    anchor: ActivationAnchor | None  # the anchor's hooks and reference copy; None: no anchor


def apply_head_policy(trainer: Any, policy: HeadPolicy, key: str) -> HeadTraining:
    """Apply ``policy`` to a TRL trainer (SFTTrainer, GRPOTrainer) before ``trainer.train()`` makes
    its optimizer: restrict its model's updates (:func:`restrict_updates`; a trainer with
    ``weight_decay > 0`` is refused, see the module docstring; the trainable share is logged) and
    install the activation anchor (:func:`sparks.train.anchor.install_anchor`). ``key`` names the
    config key in errors and in the log line."""
    if policy.freeze is not None and policy.train_only is not None:
        raise ValueError(
            f"{key} sets both freeze and train_only; give one: freeze keeps the named heads fixed and trains the rest, "
            "train_only trains the named heads and keeps the rest fixed"
        )
    if policy.anchor_weight < 0:
        raise ValueError(f"{key} sets anchor_weight = {policy.anchor_weight}; the anchor weight must be >= 0")
    heads, training = (policy.train_only, True) if policy.train_only is not None else (policy.freeze, False)
    if heads is not None and trainer.args.weight_decay:
        raise ValueError(
            f"{key} with weight_decay = {trainer.args.weight_decay}: AdamW decays every entry of the q_proj and "
            "o_proj tensors the named heads share with frozen heads, gradient or not; remove weight_decay from "
            "the run's trainer section"
        )
    if heads is not None:  # checked before the anchor changes the trainer
        config = trainer.model.config
        check_heads(parse_heads(heads, key), config.num_hidden_layers, config.num_attention_heads, key)
    anchor = None
    if policy.anchor and policy.anchor_weight > 0:  # first: the reference copy is taken before any hook is added
        anchor = install_anchor(trainer, policy.anchor, policy.anchor_weight, key)
        log.info(
            "%s: anchoring %s to the starting model's outputs, weight %g", key, ", ".join(policy.anchor), policy.anchor_weight
        )
    elif policy.anchor or policy.anchor_weight > 0:
        log.warning(
            "%s: an anchor needs both heads and a weight > 0 (anchor = %s, anchor_weight = %g); no anchor",
            key,
            policy.anchor,
            policy.anchor_weight,
        )
    restriction = None
    if heads is not None:
        restriction = restrict_updates(
            trainer.model, train=heads if training else None, freeze=None if training else heads, key=key
        )
        log.info(
            "%s: %s %s: %d of %d weights trainable (%.3f %%), the rest stay as at step 0",
            key,
            "train only" if training else "freeze",
            ", ".join(heads),
            restriction.trainable,
            restriction.total,
            100 * restriction.trainable / restriction.total,
        )
    return HeadTraining(restriction, anchor)


def restrict_trainer(trainer: Any, heads: list[str] | None, key: str) -> Restriction | None:
    """Restrict a TRL trainer's model to train only ``heads`` (None leaves it whole): the
    ``train_only`` part of :func:`apply_head_policy`."""
    if heads is None:
        return None
    return apply_head_policy(trainer, HeadPolicy(train_only=tuple(heads)), key).restriction
