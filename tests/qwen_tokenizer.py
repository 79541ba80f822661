"""A real Qwen2.5 tokenizer for tests, built offline from a vendored BPE rank file.

``tests/fixtures/qwen2_vocab/qwen.tiktoken.xz`` holds the 151,643 byte-level BPE ranks of
Qwen2/Qwen2.5's regular vocabulary (see that folder's README for provenance and licence).
:func:`build_qwen25_tokenizer` turns it into a ``tokenizer.json`` + ``tokenizer_config.json``
pair that behaves like ``Qwen/Qwen2.5-*-Instruct``'s: same ids, same pre-tokenizer split
(one token per digit), NFC normaliser, the 22 added tokens 151643-151664, eos
``<|im_end|>``, pad ``<|endoftext|>`` and Qwen2.5-Instruct's chat template.

With ``think_tokens=True`` it also adds ``<tool_response>``, ``</tool_response>``,
``<think>`` and ``</think>`` as plain (non-special) added tokens, so that the added-token
table is Qwen3's (``<think>`` = 151667, ``</think>`` = 151668).

Nothing here touches the network or any file outside this repository, and ``tiktoken`` is
not needed: the rank file is parsed here and handed to transformers' ``TikTokenConverter``.
"""

from __future__ import annotations

import base64
import functools
import json
import lzma
from pathlib import Path

VOCAB_XZ = Path(__file__).resolve().parent / "fixtures" / "qwen2_vocab" / "qwen.tiktoken.xz"

# Qwen2's pre-tokenizer split: like GPT-4's, except \p{N} (one digit per piece) instead of \p{N}{1,3}.
QWEN2_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

N_REGULAR = 151_643  # ids 0..151642 come from the rank file

# Qwen2.5's added tokens, ids 151643.. in this order.  The first 14 are "special" (skipped by
# decode(skip_special_tokens=True)); from <tool_call> on they are plain added tokens, as in
# Qwen2.5's (and Qwen3's) tokenizer_config.json.
QWEN25_SPECIAL_TOKENS = [
    "<|endoftext|>",  # 151643
    "<|im_start|>",  # 151644
    "<|im_end|>",  # 151645
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",  # 151656
]
QWEN25_PLAIN_ADDED_TOKENS = [
    "<tool_call>",  # 151657
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",  # 151664
]
# Qwen3's extra added tokens (also plain): 151665..151668.
THINK_ADDED_TOKENS = ["<tool_response>", "</tool_response>", "<think>", "</think>"]

# Qwen2.5-Instruct's chat template, verbatim from its tokenizer_config.json minus the
# ``{%- if tools %}`` system-prompt branch (tools passed to apply_chat_template are ignored).
# Text taken from the copy quoted in ShishirPatil/gorilla,
# berkeley-function-call-leaderboard/bfcl/model_handler/oss_model/qwen.py (commit 00c934f1).
QWEN25_CHAT_TEMPLATE = r"""{%- if messages[0]['role'] == 'system' %}
    {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
{%- else %}
    {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""


def load_ranks(path: Path = VOCAB_XZ) -> dict[bytes, int]:
    """The tiktoken rank file (``base64(token) rank`` per line) as {token bytes: rank}."""
    ranks: dict[bytes, int] = {}
    for line in lzma.decompress(path.read_bytes()).splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    if len(ranks) != N_REGULAR or sorted(ranks.values()) != list(range(N_REGULAR)):
        raise ValueError(f"{path}: expected ranks 0..{N_REGULAR - 1}, got {len(ranks)} entries")
    return ranks


@functools.cache
def _converted_vocab_json() -> str:
    """The regular vocabulary converted to a ``tokenizers.Tokenizer`` (JSON), once per process."""
    from tokenizers import Regex, normalizers, pre_tokenizers, processors
    from transformers.convert_slow_tokenizer import TikTokenConverter

    class _RanksConverter(TikTokenConverter):
        # TikTokenConverter reads the file with tiktoken.load.load_tiktoken_bpe; hand it the
        # ranks parsed here instead, so tiktoken is not needed.
        @staticmethod
        def load_tiktoken_bpe(tiktoken_url):
            return load_ranks(Path(tiktoken_url))

    tok = _RanksConverter(vocab_file=str(VOCAB_XZ), pattern=QWEN2_PATTERN).converted()
    # Normaliser, pre-tokenizer and post-processor as in Qwen's tokenizer.json (the converter
    # has no normaliser and leaves trim_offsets/use_regex at their defaults).
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tok.model.ignore_merges = False  # as in Qwen's tokenizer.json
    return tok.to_str()


def _qwen25_backend(think_tokens: bool):
    """A fresh ``tokenizers.Tokenizer``: the converted vocabulary plus Qwen's added tokens."""
    from tokenizers import AddedToken, Tokenizer

    tok = Tokenizer.from_str(_converted_vocab_json())
    # Added here rather than through TikTokenConverter(extra_special_tokens=...), which would
    # mark every one of them special; Qwen marks <tool_call>, <|fim_*|>, ... (and <think>) not special.
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in QWEN25_SPECIAL_TOKENS])
    plain = QWEN25_PLAIN_ADDED_TOKENS + (THINK_ADDED_TOKENS if think_tokens else [])
    tok.add_tokens([AddedToken(t, normalized=False, special=False) for t in plain])
    expected = N_REGULAR + len(QWEN25_SPECIAL_TOKENS) + len(plain)
    if tok.get_vocab_size(with_added_tokens=True) != expected:
        raise RuntimeError(f"vocabulary has {tok.get_vocab_size(with_added_tokens=True)} entries, expected {expected}")
    return tok


def build_qwen25_tokenizer(
    out_dir: Path,
    chat_template: str | None = QWEN25_CHAT_TEMPLATE,
    think_tokens: bool = False,
) -> Path:
    """Write a Qwen2.5-Instruct-like fast tokenizer to ``out_dir`` (``save_pretrained``) and return it.

    Load it with ``AutoTokenizer.from_pretrained(out_dir)``.  The BPE conversion is cached per
    process; a directory already built with the same arguments is left as it is.
    """
    from transformers import PreTrainedTokenizerFast

    out_dir = Path(out_dir)
    stamp_path = out_dir / ".qwen25_build.json"
    stamp = {
        "vocab_sha256_xz": _xz_digest(),
        "chat_template": chat_template,
        "think_tokens": think_tokens,
    }
    if stamp_path.is_file() and (out_dir / "tokenizer.json").is_file():
        try:
            if json.loads(stamp_path.read_text()) == stamp:
                return out_dir
        except ValueError:
            pass

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_qwen25_backend(think_tokens),
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        extra_special_tokens=QWEN25_SPECIAL_TOKENS[1:],
        chat_template=chat_template,
        model_max_length=131072,
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    # save_jinja_files=False: template inside tokenizer_config.json, as in Qwen's Hub repos
    # (transformers 5 otherwise writes it to a separate chat_template.jinja).
    tokenizer.save_pretrained(out_dir, save_jinja_files=False)
    stamp_path.write_text(json.dumps(stamp))
    return out_dir


@functools.cache
def _xz_digest() -> str:
    import hashlib

    return hashlib.sha256(VOCAB_XZ.read_bytes()).hexdigest()
