"""The offline Qwen2.5 tokenizer built by tests/qwen_tokenizer.py behaves like the real one.

Expected ids are Qwen2.5's; the long chat-prompt ids are the ones Qwen/Qwen2.5-*-Instruct
tokenizers print in public example code (e.g. "how are you!" -> [5158, 525, 498, 0] in
yanfeng98/fork-llama-factory test/tokenizer.py, run against Qwen/Qwen2.5-Coder-0.5B-Instruct).
"""

from __future__ import annotations

import json
import time

import pytest
from qwen_tokenizer import QWEN25_CHAT_TEMPLATE, build_qwen25_tokenizer

DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


def encode(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def test_plain_text_ids(qwen25_tokenizer):
    assert encode(qwen25_tokenizer, "Hello world") == [9707, 1879]
    assert qwen25_tokenizer(["how are you!", "I'm fine!"], add_special_tokens=False)["input_ids"] == [
        [5158, 525, 498, 0],
        [40, 2776, 6915, 0],
    ]
    assert encode(qwen25_tokenizer, "写一段描写春天的散文") == [61443, 104383, 109478, 105303, 9370, 110401]


def test_one_token_per_digit(qwen25_tokenizer):
    ids = encode(qwen25_tokenizer, "12345")
    assert ids == [16, 17, 18, 19, 20]
    assert qwen25_tokenizer.convert_ids_to_tokens(encode(qwen25_tokenizer, " 120")) == ["Ġ", "1", "2", "0"]


def test_special_tokens(qwen25_tokenizer):
    tok = qwen25_tokenizer
    expected = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645, "<|file_sep|>": 151664}
    assert {t: tok.convert_tokens_to_ids(t) for t in expected} == expected
    assert (tok.eos_token, tok.eos_token_id) == ("<|im_end|>", 151645)
    assert (tok.pad_token, tok.pad_token_id) == ("<|endoftext|>", 151643)
    assert tok.bos_token is None and tok.unk_token is None
    assert len(tok) == 151665
    # Added tokens are matched whole inside text; only the <|...|> control tokens are special.
    ids = encode(tok, "<|im_start|>hi<tool_call><|im_end|>")
    assert ids == [151644, 6023, 151657, 151645]
    assert tok.decode(ids, skip_special_tokens=True) == "hi<tool_call>"


def test_chat_template_default_system(qwen25_tokenizer):
    text = qwen25_tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 2+3?"}], tokenize=False, add_generation_prompt=True
    )
    assert text == (
        f"<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert qwen25_tokenizer.chat_template == QWEN25_CHAT_TEMPLATE


def test_chat_template_own_system_and_turns(qwen25_tokenizer):
    messages = [
        {"role": "system", "content": "Reason step by step."},
        {"role": "user", "content": "1+1?"},
        {"role": "assistant", "content": "2"},
    ]
    expected = (
        "<|im_start|>system\nReason step by step.<|im_end|>\n"
        "<|im_start|>user\n1+1?<|im_end|>\n"
        "<|im_start|>assistant\n2<|im_end|>\n"
    )
    assert qwen25_tokenizer.apply_chat_template(messages, tokenize=False) == expected
    assert qwen25_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == (
        expected + "<|im_start|>assistant\n"
    )


def test_chat_prompt_ids_match_qwen25(qwen25_tokenizer):
    tok = qwen25_tokenizer
    question = "Joy can read 8 pages of a book in 20 minutes. How many hours will it take her to read 120 pages?"
    text = tok.apply_chat_template([{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True)
    system = [
        151644,
        8948,
        198,
        2610,
        525,
        1207,
        16948,
        11,
        3465,
        553,
        54364,
        14817,
        13,
        1446,
        525,
        264,
        10950,
        17847,
        13,
        151645,
        198,
    ]
    user = [151644, 872, 198, 79771, 646, 1349, 220, 23, 6816, 315, 264, 2311, 304, 220, 17, 15, 4420, 13, 2585, 1657]
    user += [4115, 686, 432, 1896, 1059, 311, 1349, 220, 16, 17, 15, 6816, 30, 151645, 198]
    assert encode(tok, text) == system + user + [151644, 77091, 198]


def test_think_tags_are_not_tokens_in_qwen25(qwen25_tokenizer):
    tok = qwen25_tokenizer
    assert tok.convert_ids_to_tokens(encode(tok, "May?<think></think>")) == ["May", "?<", "think", "></", "think", ">"]
    assert len(encode(tok, "<think>")) > 1
    assert "<think>" not in tok.get_vocab()


def test_think_tokens_flavour(qwen25_think_tokenizer):
    tok = qwen25_think_tokenizer
    assert encode(tok, "<think>") == [151667]
    assert encode(tok, "</think>") == [151668]
    ids = encode(tok, "May?<think>x</think>")
    assert ids == [11109, 30, 151667, 87, 151668]
    # Plain added tokens, as in Qwen3 / R1-Distill: they survive skip_special_tokens.
    assert tok.decode(ids, skip_special_tokens=True) == "May?<think>x</think>"
    assert len(tok) == 151669
    assert tok.eos_token_id == 151645 and encode(tok, "Hello world") == [9707, 1879]


@pytest.mark.parametrize(
    "text",
    [
        r"The answer is $\boxed{\frac{1}{2}}$.",
        r"$2\sqrt{3}$ and \(x^2 + y^2 = r^2\)",
        "3 × 4 = 12, café, naïve, ½ ≤ π",
        "Let's compute:\n\n  12 + 30 = 42\n\t\\therefore \\boxed{42}",
        "数学：2×3=6 😀",
    ],
)
def test_round_trip(qwen25_tokenizer, text):
    ids = encode(qwen25_tokenizer, text)
    assert qwen25_tokenizer.decode(ids) == text


def test_nfc_normalisation(qwen25_tokenizer):
    assert encode(qwen25_tokenizer, "cafe\u0301") == encode(qwen25_tokenizer, "caf\u00e9")


def test_saved_files(qwen25_tokenizer_dir):
    config = json.loads((qwen25_tokenizer_dir / "tokenizer_config.json").read_text())
    assert config["chat_template"] == QWEN25_CHAT_TEMPLATE
    assert (config["eos_token"], config["pad_token"]) == ("<|im_end|>", "<|endoftext|>")
    assert (qwen25_tokenizer_dir / "tokenizer.json").is_file()


def test_rebuild_is_cached(qwen25_tokenizer_dir):
    before = (qwen25_tokenizer_dir / "tokenizer.json").stat().st_mtime_ns
    start = time.perf_counter()
    assert build_qwen25_tokenizer(qwen25_tokenizer_dir) == qwen25_tokenizer_dir
    assert time.perf_counter() - start < 1.0
    assert (qwen25_tokenizer_dir / "tokenizer.json").stat().st_mtime_ns == before
