import json
from pathlib import Path

import pytest

from sparks.data.answers import (
    CHOICE,
    MATH,
    SYNTHETIC,
    answer_checker,
    extract_answer,
    extract_choice,
    has_think_format,
    is_correct,
    is_correct_choice,
    is_correct_math,
    parse_reference,
)
from sparks.data.hub import _gsm8k_row
from sparks.train.rewards import correctness, think_format


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("<think>3+4=7</think>7", "7"),
        ("7", "7"),
        ("<think>1+1=2</think>2<eos>junk 9", "2"),
        ("Janet has 3.\n#### 1,234", "1234"),
        ("<think>3+4=7", None),  # never closed
        ("<think></think>", None),
        ("", None),
        ("no digits here", None),
        ("∑ unicode ✓ </think> ∞", None),
        ("<think>" + "3+4=7;" * 5000, None),
    ],
)
def test_extract_answer_never_raises(text, answer):
    assert extract_answer(text) == answer


def test_extract_answer_on_non_string():
    assert extract_answer(None) is None  # type: ignore[arg-type]


def test_is_correct():
    assert is_correct("<think>3+4=7</think>7", "7")
    assert not is_correct("<think>3+4=8</think>8", "7")
    assert is_correct("#### 1,234", "1234")
    assert not is_correct("<think>", "7")


def test_think_format():
    assert has_think_format("<think>3+4=7;7-2=5</think>5")
    assert not has_think_format("<think>3+4=7</think>")
    assert not has_think_format("<think>3+4=7</think>5<think>")
    assert not has_think_format("5")


# --- hub math: math-verify on both sides, on real reference answers ------------------------

FIXTURES = Path(__file__).parent / "fixtures"


def real_references() -> dict[str, list[str]]:
    """GSM8K test (1,319), AIME 2024 (30) and AMC 2023 (40) reference answers, as their loaders read them."""
    gsm8k = [_gsm8k_row(json.loads(line))["answer"] for line in (FIXTURES / "gsm8k" / "test.jsonl").open()]
    aime = [str(json.loads(line)["answer"]) for line in (FIXTURES / "aime24" / "test.jsonl").open()]
    amc = [str(json.loads(line)["answer"]) for line in (FIXTURES / "amc23" / "test.jsonl").open()]
    return {"gsm8k": gsm8k, "aime24": aime, "amc23": amc}


def test_every_real_reference_parses_and_is_accepted_when_stated_back_boxed():
    for name, answers in real_references().items():
        assert all(parse_reference(a) for a in answers), name
        stated = [f"<think>working</think>The final answer is $\\boxed{{{a}}}$." for a in answers]
        assert all(is_correct_math(c, a) for c, a in zip(stated, answers)), name
        wrong = [f"<think>working</think>$\\boxed{{{a}1}}$" for a in answers]  # another number
        assert not any(is_correct_math(c, a) for c, a in zip(wrong, answers)), name


@pytest.mark.parametrize(
    ("completion", "reference", "correct"),
    [
        ("<think>we add 48 and 24</think>The final answer is $\\boxed{72}$", "72", True),  # not the trace's 48
        ("we add 48 and 24, so the answer is 72.", "72", True),
        ("<think>so 1/2</think>$\\boxed{\\frac{1}{2}}$", "\\frac{1}{2}", True),
        ("<think></think>\\boxed{0.75}", "\\dfrac{3}{4}", True),
        ("<think></think>\\boxed{2\\sqrt3}", "2\\sqrt{3}", True),
        ("<think></think>\\boxed{2}", "2\\sqrt{3}", False),  # a bare reference would parse to 2
        ("<think></think>\\boxed{\\sqrt{2}}", "\\sqrt{2}", True),
        ("<think></think>\\boxed{\\pi}", "\\pi", True),
        ("<think></think>\\boxed{(1,2)}", "(1,2)", True),
        ("<think></think>\\boxed{[1,2]}", "(1,2)", False),  # closed is not open
        ("<think></think>\\boxed{1,000}", "1000", True),  # thousands separator
        ("The answer is 18 \\text{ cm}", "18", True),  # units
        ("#### 1,234", "1234", True),  # GSM8K's answer line
        ("\\boxed{025}", "25", True),  # AIME's zero-padded answers
        ("$27$", "27.0", True),  # AMC's float answers
        ("<think>2+2=4", "4", False),  # a trace that never closed has no answer
        ("", "4", False),
    ],
)
def test_math_checker_on_forms_of_one_answer(completion, reference, correct):
    assert is_correct_math(completion, reference) is correct


def test_math_checker_never_raises_and_an_unparsable_reference_is_never_matched():
    for junk in ("", None, "</think>$\\frac{", "\\" * 100, "\\boxed{" * 50):
        assert is_correct_math(junk, "72") is False
    assert parse_reference("") == () and parse_reference("\\frac{") == ()
    assert is_correct_math("\\boxed{}", "") is False


def test_rewards_and_the_evaluator_agree_on_the_same_completions():
    """GRPO's correctness reward and evaluation use one checker per task source."""
    answers = real_references()["gsm8k"][:20]
    completions = [
        f"<think>working</think>\\boxed{{{a}}}" if i % 2 else f"<think>working</think>\\boxed{{{a}7}}"
        for i, a in enumerate(answers)
    ]
    rewards = correctness(completions, answers, source=["gsm8k"] * len(answers))
    assert rewards == [float(MATH.is_correct(c, a)) for c, a in zip(completions, answers)]
    assert rewards == [float(i % 2) for i in range(len(answers))]
    assert answer_checker("gsm8k") is MATH and answer_checker("synthetic") is SYNTHETIC
    # the number-only checker would take the trace's first number from the hub format
    assert correctness(["we add 48 and 24. $\\boxed{72}$"], ["72"], source=["synthetic"]) == [0.0]


def test_hub_format_reward_wants_a_closed_trace_then_a_readable_answer():
    ok = "<think>48+24=72</think>The final answer is $\\boxed{72}$."
    assert think_format([ok], [True], source=["gsm8k"]) == [1.0]
    assert think_format(["48+24=72</think>\\boxed{72}"], [True], source=["gsm8k"]) == [1.0]  # <think> was in the prompt
    assert think_format(["<think>48+24=72"], [True], source=["gsm8k"]) == [0.0]
    assert think_format(["<think>a</think><think>b</think>72"], [True], source=["gsm8k"]) == [0.0]
    assert think_format(["<think>a</think>no answer here"], [True], source=["gsm8k"]) == [0.0]
    assert think_format(["\\boxed{72}"], [False], source=["gsm8k"]) == [1.0]
    assert think_format([ok], [False], source=["gsm8k"]) == [0.0]
    assert think_format(["<think>1+1=2</think>2", "2"], [True, False], source=["synthetic"] * 2) == [1.0, 1.0]


# --- multiple choice (GPQA): one letter, boxed first, else the final line ------------------


@pytest.mark.parametrize(
    ("completion", "letter"),
    [
        ("<think>A is tempting, but B fits</think>The final answer is $\\boxed{C}$.", "C"),  # not the trace's A, B
        ("<think></think>\\boxed{\\text{C}}", "C"),
        ("\\boxed{\\textbf{(c)}}", "C"),
        ("So the answer is $\\boxed{C) 10^{-4} eV}$", "C"),
        ("<think>Answer: A</think>\nB is wrong: it ignores the lifetime.\nAnswer: D", "D"),  # the final line only
        ("The answer is (B).", "B"),
        ("Weighing the options...\n\n**C**\n", "C"),
        ("**Answer:** A", "A"),
        ("Answer: $D$", "D"),
        ("\\boxed{B}\nAnswer: B", "B"),
        ("\\boxed{10^{-4}\\text{ eV}}\nAnswer: A", "A"),  # a box without a letter: the final line decides
        # malformed: wrong, never an error
        ("<think>The answer is B", None),  # a trace that never closed
        ("<think>Answer: B</think>I am not sure.", None),  # the trace's letter does not count
        ("<think>B</think>", None),
        ("Answer: A or B", None),  # two letters on the final line
        ("\\boxed{A} or maybe \\boxed{B}", None),  # two boxes disagree
        ("\\boxed{E}", None),
        ("ABCD", None),
        ("The answer is 42.", None),
        ("", None),
        (None, None),
        ("\\boxed{" * 2000 + "7", None),  # unclosed boxes, read in one pass
        ("}" * 50 + "\\boxed{C}" + "{" * 50, "C"),
    ],
)
def test_choice_checker_reads_one_letter(completion, letter):
    assert extract_choice(completion) == letter
    assert is_correct_choice(completion, "C") is (letter == "C")


def test_choice_checker_compares_with_the_reference_letter():
    assert is_correct_choice("\\boxed{c}", "C") and is_correct_choice("Answer: C", "(C)")
    assert not is_correct_choice("Answer: C", "D")
    for junk in ("", "E", "CD", "10", None):  # a reference that is not one letter is never matched
        assert is_correct_choice("Answer: C", junk) is False
        assert CHOICE.reads_reference(junk) is False
    assert CHOICE.extract("<think>hmm</think>\\boxed{B}") == "B"


def test_gpqa_uses_the_choice_checker_in_rewards_and_evaluation_alike():
    assert answer_checker("gpqa") is CHOICE and answer_checker("aime25") is MATH and answer_checker("math") is MATH
    completions = ["<think>working</think>\\boxed{C}", "<think>working</think>Answer: B", "<think>C"]
    assert correctness(completions, ["C"] * 3, source=["gpqa"] * 3) == [1.0, 0.0, 0.0]
    assert think_format(completions, [True] * 3, source=["gpqa"] * 3) == [1.0, 1.0, 0.0]
    assert think_format(["Answer: C", "<think>a</think>Answer: C"], [False, False], source=["gpqa"] * 2) == [1.0, 0.0]
    assert think_format(["<think>a</think>no letter here"], [True], source=["gpqa"]) == [0.0]
