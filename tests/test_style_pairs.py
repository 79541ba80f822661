"""Style-contrast pairs (the study's circuit inputs) from two models' openings of the answer."""

from __future__ import annotations

import copy

import polars as pl
import pytest

from sparks.attribute.style import oriented, style_pairs
from sparks.config import ConfigError, check_config

PROMPTS = ["3+4*2=", "5+5=", "7*1=", "9+9="]
PROBLEMS = pl.DataFrame({"problem_id": [10, 11, 12, 13], "difficulty": ["medium", "easy", "easy", "easy"]})


def ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_openings_become_pairs_of_one_length_cut_before_their_next_token(tokenizer):
    reasoning = ["<think>7*2;4</think>4", "<think>0</think>0", "<think>7</think>7", "1"]
    starting = ["<think></think>4", "<think>0</think>0", "<think></think>7", "18"]
    pairs = style_pairs(
        PROBLEMS, [ids(tokenizer, t) for t in reasoning], [ids(tokenizer, t) for t in starting], PROMPTS, tokenizer, 10
    )
    assert pairs["pair_id"].to_list() == [10, 12]  # 11: the same opening; 13: the reasoning opening is one token
    first = pairs.row(0, named=True)
    n = len(ids(tokenizer, "<think></think>4")) - 1  # the shorter opening, less its next token
    assert first["opening_tokens"] == n and first["kind"] == "style" and first["think"]
    assert first["clean"] == PROMPTS[0] + tokenizer.decode(ids(tokenizer, reasoning[0])[:n])
    assert first["corrupt"] == PROMPTS[0] + "<think></think>"
    assert first["corrupt_answer"] == "4" and first["clean_answer"] == tokenizer.decode(ids(tokenizer, reasoning[0])[n])
    assert first["clean_opening"] == reasoning[0] and first["corrupt_opening"] == starting[0]
    assert (pairs["n_tokens"] == [len(ids(tokenizer, c)) for c in pairs["corrupt"]]).all()
    assert all(len(ids(tokenizer, a)) == len(ids(tokenizer, b)) for a, b in pairs.select("clean", "corrupt").rows())


def test_no_contrast_is_an_error_that_says_why(tokenizer):
    same = [ids(tokenizer, "<think>1</think>1")] * 4
    with pytest.raises(ValueError, match=r"the same \(4\)"):
        style_pairs(PROBLEMS, same, same, PROMPTS, tokenizer, 8)


def test_the_starting_model_is_analysed_on_its_own_opening(tokenizer):
    reasoning, starting = [ids(tokenizer, "<think>7*2;4</think>4")], [ids(tokenizer, "<think></think>4")]
    pairs = style_pairs(PROBLEMS.head(1), reasoning, starting, PROMPTS[:1], tokenizer, 10)
    flipped = oriented(pairs, starting_model=True)
    for a, b in (("clean", "corrupt"), ("clean_answer", "corrupt_answer"), ("clean_opening", "corrupt_opening")):
        assert flipped[a].to_list() == pairs[b].to_list() and flipped[b].to_list() == pairs[a].to_list()
    assert oriented(pairs, starting_model=False).equals(pairs)


def test_style_pairs_need_think_on_and_no_think_comparison(raw_config):
    raw = copy.deepcopy(raw_config)
    raw["attribute"] = {"pairs": "style"}
    with pytest.raises(ConfigError, match="set attribute.think: true and attribute.compare_think_at: none"):
        check_config(raw)
    raw["attribute"] = {"pairs": "style", "think": True, "compare_think_at": "none"}
    assert check_config(raw)["attribute"]["style"] == {"reasoning": "final", "opening_tokens": 16, "temperature": 0.6}


def test_each_task_can_take_its_own_kind_of_pairs(raw_config):
    from sparks.config import pairs_kind

    raw = copy.deepcopy(raw_config)
    raw["tasks"]["twin"] = copy.deepcopy(raw["tasks"]["arith"])
    raw["attribute"] = {"pairs": {"twin": "style"}, "think": True, "compare_think_at": "none"}
    attribute = check_config(raw)["attribute"]
    assert pairs_kind(attribute, "twin") == "style" and pairs_kind(attribute, "arith") == "operand"
    raw["attribute"]["pairs"] = {"nosuch": "style"}
    with pytest.raises(ConfigError, match="attribute.pairs names task 'nosuch'"):
        check_config(raw)
