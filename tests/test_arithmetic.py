import random

import pytest

from sparks.data import arithmetic as arith
from sparks.data.tasks import synthetic_problems, task_pairs


def _eval_chain(expression: str) -> int:
    """Independent reference: evaluate left to right, keeping the last digit after each step."""
    value = int(expression[0])
    for op, digit in zip(expression[1::2], expression[2::2]):
        value = (value + int(digit)) % 10 if op == "+" else (value * int(digit)) % 10
    return value


@pytest.mark.parametrize("n_ops", [1, 2, 3, 5, 8])
def test_problems_answers_and_traces_are_right(n_ops):
    rng = random.Random(n_ops)
    for _ in range(300):
        problem = arith.sample_problem(rng, n_ops)
        assert set(problem.expression) <= set("0123456789+*")
        assert problem.answer == _eval_chain(problem.expression)
        assert all(0 <= v <= 9 for v in problem.values())
        assert all(b >= (1 if op == "+" else 2) for op, b in zip(problem.ops, problem.operands[1:]))
        steps = problem.trace().split(";")
        assert len(steps) == n_ops and all(arith.check_steps(problem.expression, problem.trace()))
        assert steps[-1] == str(problem.answer)
        assert [len(s) for s in steps] == list(range(2 * n_ops - 1, 0, -2))
        assert arith.parse_expression(problem.expression) == problem


def test_formats():
    problem = arith.Problem((3, 4, 2, 9), ("+", "*", "+"))
    assert arith.prompt(problem) == "3+4*2+9="
    assert arith.completion(problem) == "<think>7*2+9;4+9;3</think>3"
    assert arith.prompt(problem, think=False) == "3+4*2+9=<think></think>"
    assert arith.completion(problem, think=False) == "3"


def test_check_steps_flags_wrong_calculation_and_copy():
    assert arith.check_steps("3+4*2+9", "7*2+9;4+9;3") == [True, True, True]
    assert arith.check_steps("3+4*2+9", "7*2+9;5+9;4") == [True, False, True]  # 7*2 -> 5 is wrong
    assert arith.check_steps("3+4*2+9", "7*3+9;1+9;0") == [False, True, True]  # tail miscopied
    assert arith.check_steps("3+4", "garbage;7") == [False, False]
    assert arith.check_steps("3+4", "") == []


def test_sample_problem_rejects_zero_ops():
    with pytest.raises(ValueError, match="n_ops must be >= 1"):
        arith.sample_problem(random.Random(0), 0)


def _task(**kw):
    return {
        "source": "synthetic",
        "difficulties": {"easy": 1, "medium": 3, "hard": 5},
        "n_train": 300,
        "n_eval": 40,
        "n_pairs": 64,
        **kw,
    }


def test_synthetic_problems_are_deterministic_and_graded():
    a, b = synthetic_problems(_task(), seed=3), synthetic_problems(_task(), seed=3)
    assert a.equals(b)
    assert not a.equals(synthetic_problems(_task(), seed=4))
    counts = a.group_by("split", "difficulty").len().sort("split", "difficulty").rows()
    assert counts == [
        ("eval", "easy", 40),
        ("eval", "hard", 40),
        ("eval", "medium", 40),
        ("train", "easy", 100),
        ("train", "hard", 100),
        ("train", "medium", 100),
    ]
    for row in a.iter_rows(named=True):
        assert row["question"].count("+") + row["question"].count("*") == row["n_ops"]
        assert int(row["answer"]) == _eval_chain(row["question"].rstrip("="))
    easy_eval = a.filter((a["difficulty"] == "easy") & (a["split"] == "eval"))
    assert easy_eval["question"].n_unique() >= 15  # a small space is sampled, not collapsed to one problem
    hard = a.filter(a["difficulty"] == "hard")
    train, held_out = (
        set(hard.filter(hard["split"] == "train")["question"]),
        set(hard.filter(hard["split"] == "eval")["question"]),
    )
    assert not train & held_out  # multi-step eval problems are unseen in training


def test_pairs_have_equal_length_and_a_different_answer(tokenizer):
    task = _task()
    pairs = task_pairs(synthetic_problems(task, 0), task, 0, tokenizer)
    assert len(pairs) == 3 * 2 * 64
    for row in pairs.iter_rows(named=True):
        clean = tokenizer(row["clean"], add_special_tokens=False)["input_ids"]
        corrupt = tokenizer(row["corrupt"], add_special_tokens=False)["input_ids"]
        assert len(clean) == len(corrupt) == row["n_tokens"]
        assert row["clean_answer"] != row["corrupt_answer"]
        expr_clean, expr_corrupt = row["clean"].split("=")[0], row["corrupt"].split("=")[0]
        assert sum(x != y for x, y in zip(expr_clean, expr_corrupt)) == 1  # exactly one operand changed
        assert int(row["clean_answer"]) == _eval_chain(expr_clean)
        assert int(row["corrupt_answer"]) == _eval_chain(expr_corrupt)
        if row["think"]:
            assert row["clean"].endswith(f";{row['clean_answer']}</think>") or row["clean"].endswith(
                f"<think>{row['clean_answer']}</think>"
            )
        else:
            assert row["clean"].endswith("=<think></think>")
