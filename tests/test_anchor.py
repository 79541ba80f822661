"""Activation anchoring (sparks.train.anchor) on a tiny model: the penalty's value, where its
gradient goes, when it is recorded, and how it enters a trainer's loss and metrics.
The train-stage runs with an anchor are in tests/test_head_training.py."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from sparks.train.anchor import ActivationAnchor, install_anchor
from sparks.train.heads import HeadPolicy, apply_head_policy

ANCHORED = ["a2.h1", "a2.h3"]  # both in layer 2's KV group 0 (heads 0-3 of 8, 2 KV heads)


def _tiny(tokenizer, n_layers=4):
    from sparks.model.tiny import TinyShape, build_tiny_qwen2

    torch.manual_seed(0)
    shape = TinyShape.defaults(hidden_size=64, n_layers=n_layers, n_heads=8, n_kv_heads=2, intermediate_size=128)
    return build_tiny_qwen2(shape, tokenizer)


def _batch(model, padded: bool = True) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(2)
    ids = torch.randint(0, model.config.vocab_size, (3, 10), generator=generator)  # [batch, pos]
    mask = torch.ones_like(ids)
    if padded:
        mask[0, :4] = 0  # left padding, as in GRPO's prompts
        mask[2, 7:] = 0  # right padding, as in SFT's batches
    return {"input_ids": ids, "attention_mask": mask}


def _perturb(model, scale=0.05) -> None:
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * scale)


def test_the_penalty_is_zero_at_step_0_and_its_gradient_reaches_only_upstream_of_the_anchored_heads(tokenizer):
    model = _tiny(tokenizer)
    assert model.config.tie_word_embeddings  # lm_head is the embedding, which is upstream of every head
    anchor = ActivationAnchor(model, ANCHORED, key="runs.x.heads")
    model.train()
    model(**_batch(model))
    penalty = anchor.take()
    assert penalty.item() == 0.0 and penalty.requires_grad  # policy == reference, bit for bit

    _perturb(model)  # at 0 the gradient is 0 everywhere: move the policy off the reference
    model(**_batch(model))
    penalty = anchor.take()
    assert penalty.item() > 0
    penalty.backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    nonzero = {name for name, g in grads.items() if g is not None and bool(g.any())}

    d = 8
    q, k, v = (grads[f"model.layers.2.self_attn.{p}_proj.weight"] for p in "qkv")
    for head in range(8):
        rows = q[head * d : (head + 1) * d]
        assert bool(rows.any()) == (head in (1, 3)), f"a2.h{head}'s q rows"
    for kv in range(2):  # KV head 0 feeds heads 0-3, the anchored ones among them
        for proj in (k, v):
            assert bool(proj[kv * d : (kv + 1) * d].any()) == (kv == 0)
    upstream = {name for name in grads if ".layers.0." in name or ".layers.1." in name} | {
        "model.embed_tokens.weight",
        "model.layers.2.input_layernorm.weight",
    }
    assert upstream <= nonzero
    downstream = (
        {name for name in grads if ".layers.3." in name}
        | {
            "model.norm.weight",
            "model.layers.2.self_attn.o_proj.weight",
            "model.layers.2.post_attention_layernorm.weight",
        }
        | {name for name in grads if "layers.2.mlp" in name}
    )
    assert not downstream & nonzero
    assert all(not p.requires_grad and p.grad is None for p in anchor.reference.parameters())


def test_the_penalty_is_the_mean_squared_head_output_difference_over_real_tokens(tokenizer):
    model = _tiny(tokenizer)
    anchor = ActivationAnchor(model, ["a1.h6", "a2.h3", "a2.h1"])
    _perturb(model)
    captured = {}

    def keep(name):
        def hook(module, args):
            captured[name] = args[0].detach()

        return hook

    handles = [  # before the anchor's hooks: the reference stops at the deepest anchored layer's o_proj
        m.model.layers[layer].self_attn.o_proj.register_forward_pre_hook(keep((who, layer)), prepend=True)
        for who, m in (("policy", model), ("reference", anchor.reference))
        for layer in (1, 2)
    ]
    batch = _batch(model)
    model.train()
    model(**batch)
    penalty = anchor.take()
    for handle in handles:
        handle.remove()

    real = batch["attention_mask"].bool()  # [batch, pos]
    per_head = []
    for layer, head in ((1, 6), (2, 3), (2, 1)):
        p, r = (captured[who, layer][..., head * 8 : (head + 1) * 8] for who in ("policy", "reference"))
        per_head.append((p - r).pow(2).mean(-1)[real].mean())  # over the real positions' features
    torch.testing.assert_close(penalty, torch.stack(per_head).mean())
    # the same without the mask: padding counts, and the value differs
    model(input_ids=batch["input_ids"])
    assert anchor.take().item() != pytest.approx(penalty.item())


def test_the_penalty_is_recorded_only_in_training_forward_passes(tokenizer):
    """GRPO generates and scores under no_grad, evaluation runs in eval mode, and gradient
    checkpointing reruns the layers' forwards during backward: none of them records a penalty."""
    model = _tiny(tokenizer, n_layers=2)
    anchor = ActivationAnchor(model, ["a1.h0"])
    _perturb(model)
    batch = _batch(model)
    model.train()
    with torch.no_grad():
        model(**batch)
    model.generate(batch["input_ids"][:1], max_new_tokens=3, do_sample=False)
    model.eval()
    model(**batch)
    assert anchor.take() is None
    model.train()
    model.gradient_checkpointing_enable()
    model(**batch)
    anchor.take().backward()  # recomputes layer 1 under grad, in training mode
    assert model.model.layers[0].self_attn.q_proj.weight.grad.any()
    assert anchor.take() is None
    anchor.remove()
    model(**batch)
    assert anchor.take() is None


def test_the_reference_runs_under_the_autocast_of_the_models_forward(tokenizer):
    """accelerate's mixed precision wraps a prepared model's forward in autocast, inside the hooks
    around it: the reference must run in the same precision (and not through that wrapper)."""
    model = _tiny(tokenizer, n_layers=2)
    model.forward = torch.autocast("cpu", dtype=torch.bfloat16)(model.forward)  # what accelerate.prepare does
    anchor = ActivationAnchor(model, ["a1.h0"])
    model.train()
    model(**_batch(model))
    assert anchor.take().item() == 0.0
    _perturb(model)
    model(**_batch(model))
    assert anchor.take().item() > 0


class _Trainer:
    """What install_anchor uses of a TRL trainer; compute_loss runs the model like TRL's does."""

    def __init__(self, model, scaled: bool | None, accepts_loss_kwargs: bool = False):
        self.model = model
        self.args = SimpleNamespace(weight_decay=0.0)
        self._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
        self.accelerator = SimpleNamespace(gather=lambda t: t, state=SimpleNamespace())
        self.current_gradient_accumulation_steps = 4
        self.loss_is_scaled_for_ga = scaled
        self.model_accepts_loss_kwargs = accepts_loss_kwargs
        self.compute_loss_func = None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs, labels=inputs["input_ids"])
        return (outputs.loss, outputs) if return_outputs else outputs.loss


@pytest.mark.parametrize(
    ("scaled", "accepts", "items", "divisor"),
    [
        (True, False, None, 4),  # GRPOTrainer: loss_is_scaled_for_ga = True
        (None, True, 96, 4),  # SFTTrainer: the model takes num_items_in_batch and got it
        (None, True, None, 1),  # ... and did not: the Trainer divides the sum afterwards
        (False, True, 96, 1),
    ],
)
def test_install_anchor_adds_the_weighted_penalty_scaled_as_the_trainer_scales_its_loss(
    tokenizer, scaled, accepts, items, divisor
):
    model = _tiny(tokenizer, n_layers=2)
    trainer = _Trainer(model, scaled, accepts)
    plain = trainer.compute_loss
    install_anchor(trainer, ["a1.h2"], weight=3.0, key="runs.x.heads")
    _perturb(model)
    batch = _batch(model, padded=False)
    model.train()
    with torch.no_grad():
        base = plain(model, batch).item()
    values = []
    for _ in range(2):
        loss, outputs = trainer.compute_loss(model, batch, return_outputs=True, num_items_in_batch=items)
        assert outputs.logits.shape[:2] == batch["input_ids"].shape
        values.append(trainer._metrics["train"]["anchor"][-1])
        assert loss.item() == pytest.approx(base + 3.0 / divisor * values[-1], rel=1e-5)
    assert values[0] > 0 and trainer._metrics["train"]["anchor"] == values
    model.eval()
    trainer.compute_loss(model, batch)  # evaluation: TRL's loss alone, nothing logged
    assert trainer._metrics["train"]["anchor"] == values


def test_a_policy_with_both_freeze_and_train_only_is_refused_naming_its_key(tokenizer):
    trainer = _Trainer(_tiny(tokenizer, n_layers=2), scaled=None)
    policy = HeadPolicy(freeze=("a0.h1",), train_only=("a1.h0",))
    with pytest.raises(ValueError, match=r"^runs\.x\.heads sets both freeze and train_only"):
        apply_head_policy(trainer, policy, "runs.x.heads")
    with pytest.raises(ValueError, match=r"runs\.x\.heads names a2\.h0, which the model does not have"):
        apply_head_policy(trainer, HeadPolicy(anchor=("a2.h0",), anchor_weight=1.0), "runs.x.heads")
    with pytest.raises(ValueError, match=r"runs\.x\.heads sets anchor_weight = -1"):
        apply_head_policy(trainer, HeadPolicy(anchor=("a0.h0",), anchor_weight=-1.0), "runs.x.heads")
    with pytest.raises(ValueError, match=r"runs\.x\.heads names 'h1', which is not a head name"):
        apply_head_policy(trainer, HeadPolicy(freeze=("h1",), anchor=("a0.h0",), anchor_weight=1.0), "runs.x.heads")
    # refused before anything was changed: no frozen weight, no anchor
    assert all(p.requires_grad for p in trainer.model.parameters()) and "compute_loss" not in vars(trainer)
    assert not hasattr(trainer, "activation_anchor")


def test_apply_head_policy_freezes_and_anchors_together(tokenizer):
    trainer = _Trainer(_tiny(tokenizer, n_layers=2), scaled=True)
    done = apply_head_policy(trainer, HeadPolicy(freeze=["a1.h0", "a1.h1"], anchor=["a1.h0"], anchor_weight=2.0), "runs.x.heads")
    assert done.restriction.total - done.restriction.trainable == 2 * (8 * 64 + 8 + 64 * 8)  # KV group 0 still trains
    assert done.anchor is not None and done.anchor.heads == {1: [0]}
    assert all(p.requires_grad for p in trainer.model.model.embed_tokens.parameters())
    assert not any(p.requires_grad for p in done.anchor.reference.parameters())  # a copy taken before the hooks
    assert HeadPolicy(anchor=["a0.h0"]) == HeadPolicy(anchor=("a0.h0",))  # lists become tuples: hashable
    unweighted = apply_head_policy(trainer, HeadPolicy(anchor=("a0.h0",)), "runs.x.heads")  # weight 0: no anchor
    assert unweighted.restriction is None and unweighted.anchor is None
