"""Build a task's problems and clean/corrupted pairs (the prepare stage's data half)."""

from __future__ import annotations

import logging
import random
import re
from pathlib import Path
from typing import Any

import polars as pl
from transformers import PreTrainedTokenizerBase

from sparks.data import arithmetic as arith
from sparks.data.hub import ANSWER_LEAD, load_hub_problems
from sparks.data.prompting import Prompter, PromptSettings
from sparks.model.tokenizer import THINK_CLOSE, THINK_OPEN

_MAX_TRIES = 1000
log = logging.getLogger(__name__)


def synthetic_problems(task: dict[str, Any], seed: int) -> pl.DataFrame:
    """Training and held-out problems, evenly split across the configured difficulties.

    Eval problems avoid training expressions where the difficulty's space allows it (a
    one-operation chain has only 170 distinct problems, so easy eval problems may repeat).
    """
    rng = random.Random(seed)
    difficulties = task["difficulties"]
    rows, seen_train = [], set()
    per_difficulty = -(-task["n_train"] // len(difficulties))
    for split, count in (("train", per_difficulty), ("eval", task["n_eval"])):
        for name, n_ops in difficulties.items():
            for _ in range(count):
                problem = arith.sample_problem(rng, n_ops)
                if split == "eval" and problem.expression in seen_train:
                    for _ in range(_MAX_TRIES):
                        candidate = arith.sample_problem(rng, n_ops)
                        if candidate.expression not in seen_train:
                            problem = candidate
                            break
                if split == "train":
                    seen_train.add(problem.expression)
                rows.append(
                    {
                        "split": split,
                        "difficulty": name,
                        "n_ops": n_ops,
                        "question": arith.question(problem),
                        "trace": problem.trace(),
                        "reply": None,
                        "answer": str(problem.answer),
                    }
                )
    df = pl.DataFrame(rows, schema_overrides={"reply": pl.String})
    return df.with_columns(pl.int_range(pl.len()).cast(pl.Int64).alias("problem_id"))


def task_problems(task: dict[str, Any], seed: int) -> pl.DataFrame:
    if task["source"] == "synthetic":
        return synthetic_problems(task, seed)
    return load_hub_problems(task["source"], task["path"], task["subset"], task["n_train"], task["n_eval"], seed)


def _corrupt_arithmetic(rng: random.Random, problem: arith.Problem) -> arith.Problem | None:
    """Change one operand (within its operator's range) so that the answer changes."""
    index = rng.randrange(len(problem.operands))
    low = 0 if index == 0 else arith.MIN_OPERAND[problem.ops[index - 1]]
    candidates = []
    for digit in range(low, arith.MODULUS):
        operands = problem.operands[:index] + (digit,) + problem.operands[index + 1 :]
        other = arith.Problem(operands, problem.ops)
        if other.answer != problem.answer:
            candidates.append(other)
    return rng.choice(candidates) if candidates else None


def _pair_text(problem: arith.Problem, think: bool) -> str:
    """The text whose next token is the answer: think-on includes the whole trace."""
    if think:
        return arith.prompt(problem) + THINK_OPEN + problem.trace() + THINK_CLOSE
    return arith.prompt(problem, think=False)


def _synthetic_pairs(task: dict[str, Any], rng: random.Random, tokenizer) -> list[dict]:
    rows = []
    for name, n_ops in task["difficulties"].items():
        for think in (False, True):
            made = 0
            for _ in range(task["n_pairs"] * 50):
                if made == task["n_pairs"]:
                    break
                clean = arith.sample_problem(rng, n_ops)
                corrupt = _corrupt_arithmetic(rng, clean)
                if corrupt is None:
                    continue
                rows.append(
                    _pair_row(
                        name,
                        think,
                        _pair_text(clean, think),
                        _pair_text(corrupt, think),
                        str(clean.answer),
                        str(corrupt.answer),
                        tokenizer,
                    )
                )
                made += 1
    return [r for r in rows if r is not None]


def _hub_pairs(problems: pl.DataFrame, task: dict[str, Any], rng: random.Random, tokenizer, prompter: Prompter) -> list[dict]:
    """Replace one digit of a question; keep pairs whose token lengths match. Both texts end where
    the answer starts (``... \\boxed{``): think off right after the prompt, think on after the
    problem's reference trace (the clean one in both texts, so that only the question differs).
    The corrupted answer is unknown (null): the KL metric needs only the clean and corrupted runs."""
    rows, too_long = [], 0
    questions = problems.filter(pl.col("split") == "train").select("question", "trace", "answer").rows()
    if not questions:  # an evaluation set: its circuits come from its eval rows
        questions = problems.select("question", "trace", "answer").rows()
    for think in (False, True):
        made = 0
        for question, trace, answer in questions:
            digits = [m.start() for m in re.finditer(r"\d", question)]
            if made == task["n_pairs"] or not digits:
                continue
            at = rng.choice(digits)
            new = rng.choice([d for d in "0123456789" if d != question[at]])
            corrupt = question[:at] + new + question[at + 1 :]
            texts = []
            for q in (question, corrupt):
                prompt = prompter.prompt(q, think)
                texts.append(prompt + prompter.completion(prompt, trace, answer, ANSWER_LEAD, think))
            row = _pair_row("all", think, *texts, answer, None, tokenizer)
            if row is not None and row["n_tokens"] > task["max_pair_tokens"]:
                too_long += 1
            elif row is not None:
                rows.append(row)
                made += 1
    if too_long:
        log.warning("skipped %d pairs longer than tasks.<name>.max_pair_tokens = %d tokens", too_long, task["max_pair_tokens"])
    return rows


def _pair_row(difficulty, think, clean, corrupt, clean_answer, corrupt_answer, tokenizer) -> dict | None:
    n_clean = len(tokenizer(clean, add_special_tokens=False)["input_ids"])
    n_corrupt = len(tokenizer(corrupt, add_special_tokens=False)["input_ids"])
    if n_clean != n_corrupt:
        return None
    return {
        "difficulty": difficulty,
        "think": think,
        "clean": clean,
        "corrupt": corrupt,
        "clean_answer": clean_answer,
        "corrupt_answer": corrupt_answer,
        "n_tokens": n_clean,
    }


def task_pairs(
    problems: pl.DataFrame,
    task: dict[str, Any],
    seed: int,
    tokenizer: PreTrainedTokenizerBase,
    prompter: Prompter | None = None,
) -> pl.DataFrame:
    """Clean/corrupted prompt pairs of equal token length, per difficulty and think mode. Hub
    pairs are prompted by ``prompter`` (default: the schema's prompt settings for ``tokenizer``)."""
    rng = random.Random(seed + 1)
    if task["source"] == "synthetic":
        rows = _synthetic_pairs(task, rng, tokenizer)
    else:
        rows = _hub_pairs(problems, task, rng, tokenizer, prompter or Prompter(tokenizer, PromptSettings.defaults()))
    if not rows:
        raise ValueError("no clean/corrupted pair of equal token length could be made; check the task's data")
    df = pl.DataFrame(rows, schema_overrides={"corrupt_answer": pl.String})
    return df.with_columns(
        pl.int_range(pl.len()).over("difficulty", "think").cast(pl.Int64).alias("pair_id"),
        pl.lit("operand").alias("kind"),
        pl.lit(None, pl.String).alias("clean_opening"),
        pl.lit(None, pl.String).alias("corrupt_opening"),
        pl.lit(None, pl.Int64).alias("opening_tokens"),
    )


def eval_problems(problems_path: str | Path) -> pl.DataFrame:
    """The held-out problems of a task's problems table: problem_id, difficulty, question, answer."""
    from sparks.tables import read_table

    problems = read_table(problems_path, "problems")
    return problems.filter(pl.col("split") == "eval").select("problem_id", "difficulty", "question", "answer")
