"""The embedded default's tiny Qwen2-architecture models (grouped-query attention)."""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase, Qwen2Config, Qwen2ForCausalLM


@dataclass(frozen=True)
class TinyShape:
    """Width and depth of a tiny Qwen2; heads share ``n_kv_heads`` key/value heads (GQA)."""

    hidden_size: int = 128
    n_layers: int = 4
    n_heads: int = 8
    n_kv_heads: int = 2
    intermediate_size: int = 512
    max_positions: int = 128

    def __post_init__(self) -> None:
        if self.hidden_size % self.n_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by n_heads {self.n_heads}; "
                "pick values so that hidden_size / n_heads is an integer"
            )
        if self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"n_heads {self.n_heads} is not divisible by n_kv_heads {self.n_kv_heads} "
                "(grouped-query attention shares each KV head among n_heads / n_kv_heads heads)"
            )


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
