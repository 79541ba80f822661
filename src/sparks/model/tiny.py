"""The embedded default's tiny Qwen2-architecture models (grouped-query attention)."""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase, Qwen2Config, Qwen2ForCausalLM

from sparks.config import Section


@dataclass(frozen=True)
class TinyShape(Section):
    """Width and depth of a tiny Qwen2 (the config's ``shape``); heads share ``n_kv_heads`` key/value
    heads (GQA). The schema holds the defaults and limits: ``TinyShape.defaults(n_layers=2)``."""

    SCHEMA_PATH = ("$defs", "shape")

    hidden_size: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    intermediate_size: int
    max_positions: int


def build_tiny_qwen2(shape: TinyShape, tokenizer: PreTrainedTokenizerBase) -> Qwen2ForCausalLM:
    """A randomly initialised Qwen2ForCausalLM of ``shape`` for ``tokenizer``'s vocabulary."""
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.n_layers,
        num_attention_heads=shape.n_heads,
        num_key_value_heads=shape.n_kv_heads,
        max_position_embeddings=shape.max_positions,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        use_cache=True,
    )
    return Qwen2ForCausalLM(config)
