"""Model and tokenizer code shared by every stage."""


def head_dim(config) -> int:
    """Width of one attention head of a Hugging Face decoder config (an explicit head_dim wins)."""
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
