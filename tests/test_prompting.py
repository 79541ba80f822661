"""Prompts and targets from one place (sparks.data.prompting), on a real Qwen2.5 tokenizer and real GSM8K rows."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import polars as pl
import pytest

from sparks.data.answers import MATH
from sparks.data.hub import ANSWER_LEAD, load_hub_problems
from sparks.data.prompting import EMPTY_TRACE, Prompter, PromptSettings
from sparks.data.tasks import task_pairs
from sparks.train.methods import _prompt_completion

FIXTURES = Path(__file__).parent / "fixtures"
SYSTEM = PromptSettings.defaults().system


def ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


@pytest.fixture(scope="module")
def gsm8k(tmp_path_factory):
    """Real GSM8K rows (300 train, 1,319 test) in a plain folder of JSONL files."""
    folder = tmp_path_factory.mktemp("gsm8k")
    for name in ("train.jsonl", "test.jsonl"):
        shutil.copy(FIXTURES / "gsm8k" / name, folder / name)
    return load_hub_problems("gsm8k", str(folder), None, n_train=40, n_eval=20)


def test_plain_text_prompts_are_the_embedded_format(tokenizer):
    prompter = Prompter(tokenizer, PromptSettings.defaults())
    assert not prompter.templated
    assert prompter.prompt("1+2=", think=True) == "1+2="
    assert prompter.prompt("1+2=", think=False) == "1+2=<think></think>"
    assert prompter.completion("1+2=", "1+2=3", "3", None, think=True) == "<think>1+2=3</think>3"
    assert prompter.completion("1+2=", "1+2=3", "3", None, think=False) == "3"


def test_qwen25_prompts_are_rendered_by_its_chat_template(qwen25_tokenizer):
    prompter = Prompter(qwen25_tokenizer, PromptSettings.defaults())
    on, off = prompter.prompt("What is 2+3?", think=True), prompter.prompt("What is 2+3?", think=False)
    assert on == (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n")
    # think off is the assistant turn pre-filled with an empty trace, never text glued to the question
    assert off == on + EMPTY_TRACE
    assert ids(qwen25_tokenizer, off)[: len(ids(qwen25_tokenizer, on))] == ids(qwen25_tokenizer, on)
    no_system = Prompter(qwen25_tokenizer, PromptSettings.defaults(system=None)).prompt("Q?", think=True)
    assert "You are Qwen, created by Alibaba Cloud." in no_system  # the template's own default


def test_think_tags_are_whole_tokens_when_the_vocabulary_has_them(qwen25_think_tokenizer, qwen25_tokenizer):
    off = Prompter(qwen25_think_tokenizer, PromptSettings.defaults()).prompt("May?", think=False)
    think_ids = qwen25_think_tokenizer.convert_tokens_to_ids(["<think>", "</think>"])
    assert set(think_ids) <= set(ids(qwen25_think_tokenizer, off))
    # Qwen2.5 has no such token: the tags are text, but never merged with the question's characters
    pieces = qwen25_tokenizer.convert_ids_to_tokens(
        ids(qwen25_tokenizer, Prompter(qwen25_tokenizer, PromptSettings.defaults()).prompt("May?", False))
    )
    assert "?<" not in pieces and "May?" in qwen25_tokenizer.decode(ids(qwen25_tokenizer, "May?"))


def test_a_template_with_a_think_switch_gets_enable_thinking(qwen25_tokenizer):
    tok = qwen25_tokenizer.__class__.from_pretrained(qwen25_tokenizer.name_or_path)
    tok.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n"
        "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n{% endif %}{% endif %}"
    )
    prompter = Prompter(tok, PromptSettings.defaults(system=None))
    assert prompter.switch
    assert prompter.prompt("Q?", think=True).endswith("<|im_start|>assistant\n")
    assert prompter.prompt("Q?", think=False).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_a_template_that_opens_the_trace_is_continued_inside_it(qwen25_tokenizer):
    tok = qwen25_tokenizer.__class__.from_pretrained(qwen25_tokenizer.name_or_path)
    tok.chat_template = (
        "{% for m in messages %}{{ m.content }}{% endfor %}{% if add_generation_prompt %}<|Assistant|><think>\n{% endif %}"
    )
    prompter = Prompter(tok, PromptSettings.defaults(system=None))
    on = prompter.prompt("Q?", think=True)
    assert on.endswith("<think>\n") and prompter.prompt("Q?", think=False) == on + "\n</think>\n\n"
    target = prompter.completion(on, "2+3=5", "5", "$\\boxed{5}$", think=True)
    assert target == "2+3=5\n</think>\n\n$\\boxed{5}$" and MATH.is_correct(target, "5")
    assert prompter.split_sample(on, target) == ("2+3=5", "$\\boxed{5}$")


def test_chat_template_always_needs_a_template(tokenizer):
    with pytest.raises(ValueError, match=r"prompt.chat_template is 'always' but the tokenizer .* has no chat template"):
        Prompter(tokenizer, PromptSettings.defaults(chat_template="always"))
    assert not Prompter(tokenizer, PromptSettings.defaults(chat_template="auto")).templated


def test_real_gsm8k_rows_load_with_traces_replies_and_parsable_answers(gsm8k):
    train = gsm8k.filter(pl.col("split") == "train")
    assert train.height == 40 and gsm8k.filter(pl.col("split") == "eval").height == 20
    for row in train.iter_rows(named=True):
        assert "<<" not in row["trace"] and "####" not in row["trace"]
        assert row["reply"] == f"The final answer is $\\boxed{{{row['answer']}}}$."
        assert "," not in row["answer"]


def test_sft_targets_on_real_rows_are_templated_and_judged_right(gsm8k, qwen25_tokenizer):
    prompter = Prompter(qwen25_tokenizer, PromptSettings.defaults())
    train = gsm8k.filter(pl.col("split") == "train")
    for think in (True, False):
        examples = _prompt_completion(train, think, prompter)
        for prompt, completion, answer in zip(examples["prompt"], examples["completion"], train["answer"]):
            assert prompt.startswith("<|im_start|>system\n") and prompt.count("<|im_start|>assistant\n") == 1
            assert completion.startswith("<think>\n") == think
            assert MATH.is_correct(completion, answer)  # what the reward and the evaluator will say
            assert MATH.well_formed(completion, think)


def test_hub_pairs_on_real_rows_are_templated_equal_length_and_end_at_the_answer(gsm8k, qwen25_tokenizer):
    prompter = Prompter(qwen25_tokenizer, PromptSettings.defaults())
    task = {"source": "gsm8k", "n_pairs": 12, "max_pair_tokens": 1024}
    pairs = task_pairs(gsm8k, task, 0, qwen25_tokenizer, prompter)
    assert pairs.filter(pl.col("think")).height == 12 and pairs.filter(~pl.col("think")).height == 12
    for row in pairs.iter_rows(named=True):
        clean, corrupt = row["clean"], row["corrupt"]
        assert clean.startswith("<|im_start|>system\n") and clean.endswith(ANSWER_LEAD)
        assert len(ids(qwen25_tokenizer, clean)) == len(ids(qwen25_tokenizer, corrupt)) == row["n_tokens"]
        assert sum(a != b for a, b in zip(clean, corrupt)) == 1 and re.search(r"\d", clean) is not None
        reply = clean.split("<|im_start|>assistant\n")[1]
        if row["think"]:  # the reference trace, then the answer's lead-in
            assert reply.startswith("<think>\n") and len(reply) > len(EMPTY_TRACE + ANSWER_LEAD)
        else:
            assert reply == EMPTY_TRACE + ANSWER_LEAD


def test_hub_pairs_longer_than_the_limit_are_skipped_and_counted(gsm8k, qwen25_tokenizer, caplog):
    prompter = Prompter(qwen25_tokenizer, PromptSettings.defaults())
    task = {"source": "gsm8k", "n_pairs": 4, "max_pair_tokens": 200}  # think-on pairs carry the trace
    pairs = task_pairs(gsm8k, task, 0, qwen25_tokenizer, prompter)
    assert pairs["n_tokens"].max() <= 200 and pairs.filter(~pl.col("think")).height == 4
    assert "longer than tasks.<name>.max_pair_tokens = 200 tokens" in caplog.text


def test_a_template_that_opens_the_trace_is_checked_with_it(qwen25_tokenizer):
    """A reply cut off inside a trace the prompt opened has no answer, whatever numbers it holds."""
    from sparks.train.rewards import correctness

    tok = qwen25_tokenizer.__class__.from_pretrained(qwen25_tokenizer.name_or_path)
    tok.chat_template = (
        "{% for m in messages %}{{ m.content }}{% endfor %}{% if add_generation_prompt %}<|Assistant|><think>\n{% endif %}"
    )
    prompt = Prompter(tok, PromptSettings.defaults(system=None)).prompt("What is 2+3?", think=True)
    cut_off = "2+3 is 5, so 5"
    assert correctness([cut_off], ["5"], source=["gsm8k"], prompts=[prompt]) == [0.0]
    assert correctness([cut_off + "\n</think>\n\n\\boxed{5}"], ["5"], source=["gsm8k"], prompts=[prompt]) == [1.0]
    assert correctness([cut_off], ["5"], source=["gsm8k"]) == [1.0]  # without the prompt it looks like an answer


def test_templated_distillation_rewrites_teacher_samples_in_the_students_format(qwen25_tokenizer):
    """R1-Distill-style teacher (its template opens the trace) -> Qwen2.5 student (chat template)."""
    from sparks.train.methods import distill_examples

    rows = [  # trace, reply, correct: a good sample, a wrong one, one cut off, one with nothing after its trace
        ("2+3=5", "\\boxed{5}", True),
        ("2+3=6", "\\boxed{6}", False),
        (None, None, False),
        ("2+3=5", "", True),
    ]
    traces = pl.DataFrame(
        {
            "question": ["What is 2+3?"] * 4,
            "answer": ["5"] * 4,
            "completion": ["..."] * 4,
            "trace": [r[0] for r in rows],
            "reply": [r[1] for r in rows],
            "correct": [r[2] for r in rows],
            "prompt_form": ["chat_template"] * 4,
        },
        schema_overrides={"trace": pl.String, "reply": pl.String},
    )
    student = Prompter(qwen25_tokenizer, PromptSettings.defaults())
    kept = distill_examples(traces, student, think=True, only_correct=True)
    assert kept["completion"] == ["<think>\n2+3=5\n</think>\n\n\\boxed{5}"]
    assert kept["prompt"][0].startswith("<|im_start|>system\n") and kept["prompt"][0].endswith("<|im_start|>assistant\n")
    assert MATH.is_correct(kept["completion"][0], "5") and MATH.well_formed(kept["completion"][0], True)
    every = distill_examples(traces, student, think=True, only_correct=False)
    assert len(every) == 2  # the cut-off sample and the one without a reply are never targets


def test_sft_drops_examples_longer_than_max_length_and_counts_them(gsm8k, qwen25_tokenizer, caplog):
    from sparks.train.methods import drop_long_examples

    prompter = Prompter(qwen25_tokenizer, PromptSettings.defaults())
    examples = _prompt_completion(gsm8k.filter(pl.col("split") == "train"), True, prompter)
    pairs = zip(examples["prompt"], examples["completion"])
    lengths = [len(qwen25_tokenizer(p + c, add_special_tokens=False)["input_ids"]) + 1 for p, c in pairs]
    limit = sorted(lengths)[len(lengths) // 2]
    kept = drop_long_examples(examples, qwen25_tokenizer, limit)
    assert len(kept) == sum(n <= limit for n in lengths) < len(examples)
    assert f"dropped {sum(n > limit for n in lengths)} of {len(lengths)} examples longer than max_length = {limit}" in caplog.text
    assert drop_long_examples(examples, qwen25_tokenizer, max(lengths)) is examples
    with pytest.raises(ValueError, match="every training example is longer than max_length = 8 tokens"):
        drop_long_examples(examples, qwen25_tokenizer, 8)
