"""Peak accelerator memory of a job, estimated from the model's shape before anything runs.

Each estimate is a sum of named terms (weights, gradients, optimizer state, saved activations,
KV cache, attribution buffers), so a job that will not fit says which term to shrink and which
config key shrinks it. The terms count what sparks' own code and the libraries it calls keep
alive at the peak; ``benchmarks/memory_estimate.py`` measures the same jobs on CPU (the tiny
model and a Qwen2.5-0.5B shape) and prints measured / estimated.

Per-token activation counts (elements per token per layer, d = hidden, kv = KV width,
i = MLP width), for a Qwen2/Qwen3/Llama block as transformers runs it:
- trained (parameters take gradients): every projection keeps its input; about 10 d + 3 kv + 4 i;
- attributed (parameters frozen, the input embeddings take the gradient): projections keep
  nothing, the norms, attention, SiLU and gate product keep theirs; about 8 d + 3 kv + 3 i.
No torch, no transformers: sparks.plan and the config check import this module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GB = 1e9
FLOAT32, BFLOAT16 = 4, 2
LOGIT_COPIES = 3  # logits, their log-softmax and its gradient, in float32, at the loss
# Buffers the attribution code bounds (the code reads them here): at most this many numbers of
# z(corrupt) - z(clean) while edges are scored (sparks.attribute.eap; 256 MB, whatever the model:
# on an 8B model with 1,024-token pairs the whole batch's would be 40 GB), and of the patched
# copies' node outputs in one faithfulness pass (sparks.attribute.faithfulness).
DELTA_ELEMENTS = 1 << 26
FAITHFULNESS_ELEMENTS = 1 << 27


class UnknownShape(ValueError):
    """A model whose shape cannot be read here: no local config.json, not a known hub model and
    not in the local Hugging Face cache (sparks.plan then checks nothing of it)."""


@dataclass(frozen=True)
class Shape:
    """What memory depends on in a decoder's config.json."""

    n_layers: int
    n_heads: int
    n_kv_heads: int
    hidden: int
    intermediate: int
    vocab: int
    head_dim: int
    max_positions: int
    params: float
    model_type: str = "qwen2"

    @property
    def kv(self) -> int:
        return self.n_kv_heads * self.head_dim

    @property
    def n_upstream(self) -> int:
        return 1 + self.n_layers * (self.n_heads + 1)

    @property
    def n_readers(self) -> int:
        return self.n_layers * (self.n_heads + 2 * self.n_kv_heads + 1) + 1

    @classmethod
    def of_config(cls, c: dict[str, Any]) -> Shape:
        """From a Hugging Face config.json's fields."""
        d, layers, inter, vocab = c["hidden_size"], c["num_hidden_layers"], c["intermediate_size"], c["vocab_size"]
        heads = c["num_attention_heads"]
        kv_heads = c.get("num_key_value_heads") or heads
        hd = c.get("head_dim") or d // heads
        attention = d * hd * (heads + 2 * kv_heads) + heads * hd * d
        embeddings = vocab * d * (1 if c.get("tie_word_embeddings", False) else 2)
        params = layers * (attention + 3 * d * inter) + embeddings
        return cls(
            layers,
            heads,
            kv_heads,
            d,
            inter,
            vocab,
            hd,
            c.get("max_position_embeddings", 0),
            params,
            c.get("model_type", "qwen2"),
        )


def _qwen(layers, heads, kv, d, inter, max_pos, tied, model_type="qwen2", hd=None) -> Shape:
    return Shape.of_config(
        {
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "num_key_value_heads": kv,
            "hidden_size": d,
            "intermediate_size": inter,
            "vocab_size": 151936,
            "head_dim": hd,
            "max_position_embeddings": max_pos,
            "tie_word_embeddings": tied,
            "model_type": model_type,
        }
    )


# config.json of the hub models the configs name, for a machine without a local copy (plan runs
# before anything is downloaded): layers, heads, KV heads, hidden, MLP, context, tied embeddings.
KNOWN_SHAPES = {
    "Qwen/Qwen2.5-Math-1.5B": _qwen(28, 12, 2, 1536, 8960, 4096, True),
    "Qwen/Qwen2.5-1.5B": _qwen(28, 12, 2, 1536, 8960, 131072, True),
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B": _qwen(28, 12, 2, 1536, 8960, 131072, False),
    "Qwen/Qwen2.5-0.5B": _qwen(24, 14, 2, 896, 4864, 32768, True),
    "Qwen/Qwen3-8B": _qwen(36, 32, 8, 4096, 12288, 40960, False, "qwen3", 128),
}


def model_shape(section: dict[str, Any]) -> Shape:
    """The shape of a base/teacher section (``source``, and ``shape`` for the embedded model): the
    embedded model's settings, a local folder's config.json, a known hub model, or one in the
    local Hugging Face cache."""
    source = section["source"]
    if source == "embedded":
        s = section["shape"]
        d = s["hidden_size"]
        vocab = s.get("vocab_size") or 64  # the character tokenizer's size is set when the data exists
        return Shape.of_config(
            {
                "num_hidden_layers": s["n_layers"],
                "num_attention_heads": s["n_heads"],
                "num_key_value_heads": s["n_kv_heads"],
                "hidden_size": d,
                "intermediate_size": s["intermediate_size"],
                "vocab_size": vocab,
                "max_position_embeddings": s.get("max_positions", 2048),
                "tie_word_embeddings": True,
            }
        )
    config = Path(source) / "config.json"
    if config.is_file():
        return Shape.of_config(json.loads(config.read_text()))
    if source in KNOWN_SHAPES:
        return KNOWN_SHAPES[source]
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(source, "config.json", revision=section.get("revision"))
    if isinstance(cached, str):  # a hub model downloaded once (huggingface-cli download)
        return Shape.of_config(json.loads(Path(cached).read_text()))
    raise UnknownShape(
        f"no shape known for model {source!r}: give a local folder with config.json (or add it to sparks.memory.KNOWN_SHAPES)"
    )


@dataclass
class Estimate:
    """Peak bytes as named terms (their sum is the peak)."""

    terms: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.terms.values())

    def largest(self) -> str:
        return max(self.terms, key=self.terms.get)

    def __str__(self) -> str:
        return f"{self.total / GB:.1f} GB (" + ", ".join(f"{k} {v / GB:.1f}" for k, v in self.terms.items()) + ")"


def kv_cache(shape: Shape, rows: int, tokens: int, nbytes: int) -> float:
    return 2 * shape.n_layers * shape.kv * rows * tokens * nbytes


def trained_activations(shape: Shape, rows: int, tokens: int, nbytes: int, checkpointing: bool) -> float:
    """Activations kept for the backward of a trained forward, and the loss over the vocabulary."""
    per_layer = 10 * shape.hidden + 3 * shape.kv + 4 * shape.intermediate
    if checkpointing:  # each layer's input, and one layer recomputed at a time
        kept = shape.n_layers * shape.hidden + per_layer
    else:
        kept = shape.n_layers * per_layer
    return rows * tokens * (kept * nbytes + LOGIT_COPIES * shape.vocab * FLOAT32)


def training(
    shape: Shape,
    micro_batch: int,
    tokens: int,
    *,
    gpus: int = 1,
    strategy: str = "ddp",
    checkpointing: bool = False,
    activation_bytes: int = FLOAT32,
    generation_rows: int = 0,
    generation_tokens: int = 0,
    reference: bool = False,
    accumulation: int = 1,
) -> Estimate:
    """Per GPU: float32 weights and Adam moments (sharded under zero2/zero3/fsdp), and the largest
    of the gradients, a micro-batch's activations and (GRPO) the KV cache of the generation batch
    each GPU samples. ``reference``: GRPO's frozen reference model (beta > 0); ``accumulation``:
    micro-batches per optimiser step."""
    p = shape.params
    shard = {"ddp": (1, 1, 1), "zero2": (1, gpus, gpus), "zero3": (gpus, gpus, gpus), "fsdp": (gpus, gpus, gpus)}[strategy]
    terms = {
        "weights": p * FLOAT32 / shard[0],
        "optimizer": 2 * p * FLOAT32 / shard[2],  # Adam's two moments (fused AdamW, transformers' default: no temporaries)
    }
    if reference:
        terms["reference model"] = p * activation_bytes / shard[0]
    # The backward frees each layer's activations as it writes its gradients: with one micro-batch
    # per step the peak holds the larger of the two; accumulating, the later micro-batches'
    # activations sit beside the gradients summed so far. Generation (GRPO) runs before both,
    # after the last step's gradients were freed.
    gradients = p * FLOAT32 / shard[1]
    activations = trained_activations(shape, micro_batch, tokens, activation_bytes, checkpointing)
    training = {"gradients": gradients, "activations": activations}
    if accumulation == 1:
        training = {max(training, key=training.get): max(gradients, activations)}
    cache = kv_cache(shape, generation_rows, generation_tokens, activation_bytes)
    terms |= training if sum(training.values()) >= cache else {"generation KV cache": cache}
    return Estimate(terms)


def generation(shape: Shape, rows: int, prompt: int, new: int, weight_bytes: int) -> Estimate:
    """Sampling ``rows`` sequences at once: weights, the KV cache at full length, the prefill's
    widest layer and the last position's logits with the sampler's copies."""
    return Estimate(
        {
            "weights": shape.params * weight_bytes,
            "KV cache": kv_cache(shape, rows, prompt + new, weight_bytes),
            "prefill": rows * prompt * (2 * shape.hidden + 3 * shape.intermediate) * weight_bytes,
            "logits": rows * shape.vocab * 4 * FLOAT32,
        }
    )


def eap_ig(shape: Shape, pairs: int, tokens: int, ig_steps: int, stacked: bool) -> Estimate:
    """EAP-IG of one batch of pairs in float32 (sparks.attribute.eap): weights, the activations of
    one traced forward (all ``ig_steps`` rows when stacked), the per-layer gradient sums and layer
    inputs kept for the scores, then the z(corrupt) - z(clean) buffer and each layer's reader
    gradients while edges are scored."""
    s = shape
    rows = pairs * (ig_steps if stacked else 1)
    forward = rows * tokens * s.n_layers * (8 * s.hidden + 3 * s.kv + 3 * s.intermediate) * FLOAT32
    kept = pairs * tokens * s.n_layers * ((ig_steps + 5) * s.hidden + 2 * s.kv) * FLOAT32
    z_rows = min(pairs * tokens, max(1, DELTA_ELEMENTS // (s.n_upstream * s.hidden)))
    scoring = z_rows * (s.n_upstream + 3 * (s.n_heads + 2 * s.n_kv_heads)) * s.hidden * FLOAT32
    return Estimate(
        {
            "weights": s.params * FLOAT32,
            "kept for scores": kept,
            "activations" if forward >= scoring else "edge buffer": max(forward, scoring),
            "edge scores": pairs * s.n_upstream * s.n_readers * FLOAT32,
        }
    )


def faithfulness(shape: Shape, pairs: int, tokens: int, circuits: int) -> Estimate:
    """The faithfulness curve's pass over ``circuits`` patched circuit sizes: weights, the corrupted
    run's node outputs, and the patched copies run together (sparks.attribute.faithfulness packs
    circuits into a pass while their node outputs stay under FAITHFULNESS_ELEMENTS numbers): the
    copies' output differences and, about as large, the readers' mixed inputs."""
    s = shape
    per_circuit = pairs * tokens * s.n_upstream * s.hidden
    together = min(circuits, max(1, FAITHFULNESS_ELEMENTS // per_circuit))
    return Estimate(
        {
            "weights": s.params * FLOAT32,
            "corrupted node outputs": per_circuit * FLOAT32,
            "patched copies": 2 * together * per_circuit * FLOAT32,
        }
    )
