from transformers import AutoTokenizer

from sparks.model.tokenizer import THINK_CLOSE, THINK_OPEN


def test_round_trip_through_save_and_autotokenizer(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    for text in ["3+4-2=<think>3+4=7;7-2=5</think>5", "Natalia sold 48 clips, 1/2 of them.\n#### 72", ""]:
        ids = reloaded(text, add_special_tokens=False)["input_ids"]
        assert ids == tokenizer(text, add_special_tokens=False)["input_ids"]
        assert reloaded.decode(ids) == text


def test_one_token_per_character_and_atomic_think_tags(tokenizer):
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("12+3=<think></think>", add_special_tokens=False)["input_ids"])
    assert tokens == ["1", "2", "+", "3", "=", THINK_OPEN, THINK_CLOSE]


def test_special_tokens_and_unknown_characters(tokenizer):
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    assert tokenizer.padding_side == "left"
    assert tokenizer("é", add_special_tokens=False)["input_ids"] == [tokenizer.unk_token_id]
