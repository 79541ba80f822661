"""Failure anatomy: the classifier on hand-written traces, and the trade-off table's intervals."""

from __future__ import annotations

import polars as pl
import pytest

from sparks.failures.classify import FailureSettings, classify
from sparks.registry import FAILURE_CATEGORIES as CATEGORIES

Q = "3+4*2+9="  # 3+4 -> 7, 7*2 -> 4, 4+9 -> 3


def synthetic(completion, correct=False, n_tokens=20, expected="3"):
    return classify(Q, completion, expected, correct, n_tokens, 48, synthetic=True)


def hub(completion, expected="14", correct=False, n_tokens=50):
    return classify("How many?", completion, expected, correct, n_tokens, 500, synthetic=False)


@pytest.mark.parametrize(
    "completion, correct, n_tokens, category, first_bad, abandoned",
    [
        ("<think>7*2+9;4+9;3</think>3", True, 20, "correct", None, False),
        ("<think>7*2+9;5+9;4</think>4", False, 20, "calculation_error", 1, False),  # 7*2 -> 5
        ("<think>7*3+9;1+9;0</think>0", False, 20, "calculation_error", 0, False),  # operand miscopied
        ("<think>7*2+9;4+9;4+9;4+9;4+9;4+9", False, 48, "loop", 2, False),  # repeats until the limit
        ("<think>7*2+9;4+9;4+9;4+9</think>3", False, 30, "loop", 2, False),  # repeats, then stops
        ("<think>7*2+9;4+9;3;3+1;4</think>4", False, 30, "calculation_error", 3, True),  # past the answer
        ("<think>7*2+9;4+9", False, 48, "truncated", None, False),
        ("<think>7*2+9;4+9;3", False, 20, "format", None, True),  # no </think>, below the limit
        ("<think>7*2+9;4+9;3</think>", False, 20, "format", None, True),  # no answer after it
        ("<think></think>5", False, 5, "no_trace", None, False),  # answered at once, wrongly
        ("<think>7*2+9;4+9;3</think>5", False, 20, "wrong_plan", None, True),  # right steps, wrong answer
        ("", False, 0, "format", None, False),
    ],
)
def test_synthetic_categories(completion, correct, n_tokens, category, first_bad, abandoned):
    failure = synthetic(completion, correct, n_tokens)
    assert (failure.category, failure.first_bad_step, failure.answer_abandoned) == (category, first_bad, abandoned)


def test_steps_and_bad_step_text():
    failure = synthetic("<think>7*2+9;5+9;4</think>4")
    assert failure.n_steps == 3 and failure.bad_step == "5+9"


def test_hub_equalities_are_checked_exactly():
    wrong = hub("He has 3 + 4 = 8 apples.\nSo 8 × 2 = 16.</think>16")
    assert (wrong.category, wrong.first_bad_step, wrong.bad_step) == ("calculation_error", 0, "He has 3 + 4 = 8 apples.")
    plan = hub("He has 3 + 4 = 7 apples.\n7 * 2 = 14.\n14 / 4 = 3.5</think>3.5")
    assert (plan.category, plan.first_bad_step, plan.answer_abandoned) == ("wrong_plan", None, True)
    assert hub("1,000 + 1 = 1,001\n10 / 3 = 3.33</think>1001", expected="1001", correct=True).first_bad_step is None
    assert hub("5 ÷ 0 = 7</think>7", expected="3").category == "wrong_plan"  # undefined, not counted wrong


@pytest.mark.parametrize(
    "completion",
    [None, "", "</think>", "<think>", "<think><think></think></think>", "é✓🙂" * 50, "\x00\n;;;;", "<think>" + "ab" * 200_000],
)
def test_never_raises_and_returns_one_category(completion):
    for synth in (True, False):
        failure = classify(Q, completion, "3", False, 48, 48, synthetic=synth)
        assert failure.category in CATEGORIES


def test_long_repeated_text_is_a_loop_fast():
    import time

    start = time.perf_counter()
    failure = synthetic("<think>" + "4+9;" * 50_000, n_tokens=48)
    assert failure.category == "loop" and time.perf_counter() - start < 5
    text = "<think>" + "the answer is maybe seven or eight. " * 3 + "</think>7"
    assert hub(text, expected="7").category == "loop"


def test_unicode_text_without_repetition_is_not_a_loop():
    failure = hub("<think>Ünïcödé 3 + 4 = 7 ✓\nthen 7 × 2 = 14</think>15", expected="14")
    assert failure.category == "wrong_plan" and failure.answer_abandoned


def test_loop_thresholds_come_from_settings():
    text = "<think>7*2+9;4+9;4+9</think>3"
    assert synthetic(text).category != "loop"  # a step twice is below the default of 3
    strict = classify(Q, text, "3", False, 20, 48, True, FailureSettings.defaults(loop_repeats=2))
    assert strict.category == "loop"
    with pytest.raises(Exception, match="failures.loop_repeats"):
        FailureSettings.defaults(loop_repeats=1)


def test_change_table_intervals_cover_the_difference():
    from sparks.failures.changes import change_table

    rows = []
    for problem in range(40):
        for k in range(4):
            base = "correct" if k < 3 else "wrong_plan"
            final = "loop" if (problem % 2 == 0 and k == 0) else "correct"
            for step, category in ((0, base), (10, final)):
                rows.append({"origin": "eval", "step": step, "kind": None, "heads_from": None, "seed": None,
                             "alpha": None, "difficulty": "easy", "sample_id": problem, "k": k, "category": category})  # fmt: skip
    table = change_table(pl.DataFrame(rows), [0, 10], n_boot=500)
    loop = table.filter(pl.col("category") == "loop").row(0, named=True)
    assert loop["share_before"] == 0 and loop["share_after"] == pytest.approx(20 / 160)
    assert loop["ci_low"] <= loop["delta"] <= loop["ci_high"] and loop["ci_low"] > 0
    plan = table.filter(pl.col("category") == "wrong_plan").row(0, named=True)
    assert plan["delta"] == pytest.approx(-0.25) and plan["ci_high"] == pytest.approx(-0.25)  # same in every problem
    assert set(table["comparison"]) == {"final_vs_base"} and table["n_problems"].unique().to_list() == [40]


def test_settings_defaults_match_the_schema(raw_config):
    from sparks.config import check_config

    assert FailureSettings.from_config(check_config(raw_config)) == FailureSettings.defaults()


def test_a_multiple_choice_answer_is_judged_by_its_sets_checker():
    """A wrong GPQA letter is a wrong answer, not a format failure (the math checker reads no letter)."""
    text = "<think>The energy is larger.</think>\nAnswer: C"
    assert classify("Which?", text, "B", False, 40, 500, synthetic=False, source="math").category == "format"
    assert classify("Which?", text, "B", False, 40, 500, synthetic=False, source="gpqa").category != "format"
