"""A character-level tokenizer for the embedded default, saved in Hugging Face format.

Every character of ``ALPHABET`` is one token; ``<think>`` and ``</think>`` are single tokens so
that a trace and its closing tag are one position each. The result is a
``PreTrainedTokenizerFast`` that reloads through ``AutoTokenizer.from_pretrained`` exactly like a
hub tokenizer, so every later stage uses the hub code path.
"""

from __future__ import annotations

import string
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
SPECIAL_TOKENS = [PAD, EOS, UNK]
# Printable ASCII without the other whitespace characters: enough for our tasks and for error text.
ALPHABET = [c for c in string.printable if c not in "\t\n\r\x0b\x0c"] + ["\n"]


def build_char_tokenizer() -> PreTrainedTokenizerFast:
    """Return a fast character-level tokenizer with pad/eos/unk and atomic think tags."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + [THINK_OPEN, THINK_CLOSE] + ALPHABET)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    core.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD,
        eos_token=EOS,
        unk_token=UNK,
        padding_side="left",
        model_max_length=512,
    )
    # Added tokens are matched before pre-tokenization, so the tags never split into characters.
    tokenizer.add_tokens([THINK_OPEN, THINK_CLOSE])
    return tokenizer
