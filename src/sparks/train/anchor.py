"""Activation anchoring: keep some heads' outputs close to what the starting model's heads output.

The output of head ``h`` of layer ``l`` (``a{l}.h{h}``) is the slice ``h*d:(h+1)*d`` of the input to
that layer's ``self_attn.o_proj`` (``d`` the head width), the quantity EAP-IG scores as the head's
node. :class:`ActivationAnchor` keeps a frozen reference copy of the model as it is when the anchor
is made (eval mode, no gradients, same device); on every training forward pass of the model (grad
enabled and ``model.training``: GRPO's generation and its no-grad log-prob passes, and gradient
checkpointing's recomputation during backward, do not count) it runs the reference on the same
inputs under ``torch.no_grad`` (and the autocast the model's forward ran under: accelerate's
mixed precision wraps ``model.forward``, inside the hooks) and records

    penalty = mean over anchored heads of mean((policy slice - reference slice) ** 2)

the inner mean over the batch's non-padding positions (the ``attention_mask`` of the inputs, when
they carry a 2-D one) and the head's ``d`` features. The reference stops after the deepest anchored
layer's o_proj input, so it costs at most one forward pass of the model without its head.

:func:`install_anchor` adds ``weight * penalty`` to a TRL trainer's loss (SFTTrainer, so
distillation too, and GRPOTrainer) by wrapping its ``compute_loss``: TRL's own loss is untouched,
and the penalty is scaled for gradient accumulation the way the Trainer scales that loss, so that
an optimizer step sees ``weight`` times the mean penalty over its micro-batches. The unweighted
penalty is logged as metric ``anchor`` (its mean over the micro-batches since the last log, over
all processes; ``trainer.state.log_history`` and so the ``train_log`` table).

The reference is the model the trainer holds when the anchor is installed: in ``sparks.train`` that
is ``checkpoint-0``, also on a resumed run (the trainer loads the resumed weights later). A model
whose attention has dropout > 0 sees a non-zero penalty from the dropout alone; the tiny and Qwen
models have none. Under ZeRO-3 or FSDP the copy would be of sharded weights, so those are refused.
"""

from __future__ import annotations

import copy
import inspect
import logging
from collections.abc import Iterable
from typing import Any

import torch

from sparks.types import check_heads, parse_heads

log = logging.getLogger(__name__)

METRIC = "anchor"  # the TRL metric (and train_log column) of the unweighted penalty


class _Stop(Exception):
    """Raised in the reference model once the deepest anchored layer's heads are captured."""


class ActivationAnchor:
    """The penalty of :mod:`sparks.train.anchor` on ``model``'s ``heads`` (names ``a{l}.h{h}``; ``key``
    names the config key in errors) against ``reference`` (default: a frozen copy of ``model`` now).
    Each training forward pass of ``model`` records one penalty; :meth:`take` returns their mean."""

    def __init__(
        self, model: torch.nn.Module, heads: Iterable[str], key: str = "anchor", reference: torch.nn.Module | None = None
    ):
        config = model.config
        ids = sorted(set(parse_heads(heads, key)))
        if not ids:
            raise ValueError(f"{key} names no head to anchor; name heads as a{{layer}}.h{{head}}, e.g. a2.h3")
        check_heads(ids, config.num_hidden_layers, config.num_attention_heads, key)
        self.model = model
        self.reference = _frozen_copy(model) if reference is None else reference
        self.n_heads = config.num_attention_heads
        self.heads: dict[int, list[int]] = {}  # layer -> its anchored query heads
        for head in ids:
            self.heads.setdefault(head.layer, []).append(head.head)
        self.n_anchored = len(ids)
        self._last = max(self.heads)
        self._signature = inspect.signature(type(model).forward.__get__(model))  # the class's, not a wrapper's
        self._active = False
        self._autocast: tuple[str, bool, torch.dtype] = ("cpu", False, torch.bfloat16)  # the policy forward's autocast
        self._policy: dict[int, torch.Tensor] = {}  # layer -> o_proj input [batch, pos, n_heads * d] of this forward
        self._reference: dict[int, torch.Tensor] = {}
        self._penalties: list[torch.Tensor] = []  # one per training forward since the last take()
        self._handles = [
            model.register_forward_pre_hook(self._start, with_kwargs=True),
            model.register_forward_hook(self._finish, with_kwargs=True),
        ]
        for layer in self.heads:
            self._handles.append(_o_proj(model, layer).register_forward_pre_hook(self._capture_policy(layer)))
            self._handles.append(_o_proj(self.reference, layer).register_forward_pre_hook(self._capture_reference(layer)))

    def take(self) -> torch.Tensor | None:
        """The mean penalty (a 0-d float32 tensor with the policy's graph) of the training forward
        passes since the last call, or None when there was none; forgets them."""
        penalties, self._penalties = self._penalties, []
        if not penalties:
            return None
        return penalties[0] if len(penalties) == 1 else torch.stack(penalties).mean()

    def remove(self) -> None:
        """Drop the hooks (the reference copy goes with this object)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    # hooks --------------------------------------------------------------------------------------

    def _start(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        self._active = torch.is_grad_enabled() and module.training
        self._policy = {}

    def _capture_policy(self, layer: int):
        def hook(module: torch.nn.Module, args: tuple) -> None:
            if self._active:  # not gradient checkpointing's recomputation in backward, which runs after _finish
                self._policy[layer] = args[0]
                device = args[0].device.type  # inside the forward, under the autocast accelerate wraps it in
                self._autocast = (device, torch.is_autocast_enabled(device), torch.get_autocast_dtype(device))

        return hook

    def _capture_reference(self, layer: int):
        def hook(module: torch.nn.Module, args: tuple) -> None:
            self._reference[layer] = args[0]
            if layer == self._last:
                raise _Stop

        return hook

    def _finish(self, module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        if not self._active:
            return
        self._active = False
        policy, self._policy = self._policy, {}
        missing = sorted(set(self.heads) - set(policy))
        if missing:
            raise RuntimeError(f"activation anchor: the forward pass never reached layer {missing[0]}'s o_proj")
        reference = self._run_reference(args, kwargs)
        mask = self._signature.bind_partial(*args, **kwargs).arguments.get("attention_mask")
        total = policy[self._last].new_zeros((), dtype=torch.float32)
        for layer, heads in self.heads.items():
            total = total + _head_distance(policy[layer], reference[layer], heads, self.n_heads, mask)
        self._penalties.append(total / self.n_anchored)

    def _run_reference(self, args: tuple, kwargs: dict) -> dict[int, torch.Tensor]:
        mine, theirs = next(self.model.parameters()), next(self.reference.parameters())
        if (theirs.device, theirs.dtype) != (mine.device, mine.dtype):  # a trainer that moves or casts its model late (DeepSpeed)
            self.reference.to(device=mine.device, dtype=mine.dtype)
        self._reference = {}
        device, enabled, dtype = self._autocast  # the hooks around a forward run outside its autocast: copy it
        try:
            with torch.no_grad(), torch.autocast(device, dtype=dtype, enabled=enabled):
                self.reference(*args, **kwargs)
        except _Stop:
            pass
        reference, self._reference = self._reference, {}
        if set(reference) != set(self.heads):
            raise RuntimeError("activation anchor: the reference model's forward pass did not reach the anchored layers")
        return reference


def _o_proj(model: torch.nn.Module, layer: int) -> torch.nn.Module:
    return model.model.layers[layer].self_attn.o_proj


def _frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A deep copy of ``model`` in eval mode whose parameters take no gradient."""
    reference = copy.deepcopy(model)
    for patched in ("forward", "_original_forward"):  # accelerate's autocast wrapper of a prepared model's forward
        reference.__dict__.pop(patched, None)  # would still call the original model's forward
    reference.eval()
    reference.requires_grad_(False)
    return reference


def _head_distance(
    policy: torch.Tensor, reference: torch.Tensor, heads: list[int], n_heads: int, mask: torch.Tensor | None
) -> torch.Tensor:
    """Sum over ``heads`` of each head's mean squared output difference, over the positions
    ``mask`` ([batch, pos], 1 = real token) keeps and the head's features. ``policy`` and
    ``reference`` are o_proj inputs [batch, pos, n_heads * d]."""
    *lead, width = policy.shape
    index = torch.tensor(heads, device=policy.device)
    p = policy.view(*lead, n_heads, width // n_heads).index_select(-2, index)  # [batch, pos, k, d]
    r = reference.view(*lead, n_heads, width // n_heads).index_select(-2, index).to(p.dtype)
    squared = (p.float() - r.float()).pow(2).mean(-1)  # [batch, pos, k]
    if mask is None or mask.dim() != 2 or tuple(mask.shape) != tuple(lead):
        return squared.mean(dim=(0, 1)).sum()  # no (2-D) padding mask: every position counts
    keep = mask.to(device=squared.device, dtype=squared.dtype)[..., None]  # [batch, pos, 1]
    return ((squared * keep).sum(dim=(0, 1)) / keep.sum().clamp(min=1)).sum()


def install_anchor(trainer: Any, heads: Iterable[str], weight: float, key: str = "anchor") -> ActivationAnchor:
    """Anchor ``heads`` of a TRL trainer's model to a frozen copy of it (see the module docstring):
    its loss becomes TRL's loss + ``weight`` x penalty, and the penalty is logged as ``anchor``.
    Call it before ``trainer.train()``."""
    if not weight > 0:
        raise ValueError(f"{key}: the anchor weight must be > 0, not {weight}")
    metrics = getattr(trainer, "_metrics", None)
    if not isinstance(metrics, dict) or "train" not in metrics:
        raise TypeError(
            f"{key}: activation anchoring needs a TRL trainer that logs its metrics in _metrics, not {type(trainer).__name__}"
        )
    _refuse_sharded(trainer, key)
    anchor = ActivationAnchor(trainer.model, heads, key)
    original = trainer.compute_loss  # the bound method of the trainer's class
    warned = []

    def compute_loss(model, inputs, return_outputs=False, num_items_in_batch=None):
        anchor.take()  # nothing left from forward passes outside compute_loss
        result = original(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        penalty = anchor.take()
        if penalty is None:  # evaluation, or no training forward pass
            return result
        if not penalty.requires_grad and not warned:
            warned.append(True)
            log.warning(
                "%s: the anchor penalty has no gradient (every weight upstream of the anchored heads frozen, or "
                "reentrant gradient checkpointing): it is logged but pulls nothing back",
                key,
            )
        loss, rest = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
        steps = trainer.current_gradient_accumulation_steps if _scaled_for_accumulation(trainer, num_items_in_batch) else 1
        loss = loss + (weight / steps) * penalty.to(loss.dtype)
        logged = trainer.accelerator.gather(penalty.detach().reshape(1)).mean().item()
        trainer._metrics["train"][METRIC].append(logged)
        return (loss, *rest) if isinstance(result, tuple) else loss

    trainer.compute_loss = compute_loss
    trainer.activation_anchor = anchor
    return anchor


def _scaled_for_accumulation(trainer: Any, num_items_in_batch: Any) -> bool:
    """Whether the loss ``compute_loss`` returns is already divided for gradient accumulation, by
    transformers' own rule (``Trainer.training_step``): the Trainer divides it by the number of
    micro-batches otherwise, and the anchor term must be divided the same once."""
    if getattr(trainer, "loss_is_scaled_for_ga", None) is not None:
        return bool(trainer.loss_is_scaled_for_ga)
    accepts = getattr(trainer, "model_accepts_loss_kwargs", False)
    return bool((accepts and num_items_in_batch is not None) or getattr(trainer, "compute_loss_func", None) is not None)


def _refuse_sharded(trainer: Any, key: str) -> None:
    sharded = getattr(trainer, "is_fsdp_enabled", False)
    if getattr(trainer, "is_deepspeed_enabled", False):
        plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
        sharded = sharded or getattr(plugin, "zero_stage", 0) == 3
    if sharded:
        raise ValueError(
            f"{key}: activation anchoring keeps a whole reference copy of the model in each process, which ZeRO-3 and "
            "FSDP shard; train with resources.train.strategy ddp or zero2, or drop the anchor"
        )
