"""The pre-training corpus of an embedded model: arithmetic chains in both formats."""

from __future__ import annotations

import random

from sparks.data import arithmetic as arith
from sparks.data.formats import format_completion


def arithmetic_corpus(
    n_texts: int, max_ops: int, multi_step_decay: float, think_off_fraction: float, seed: int
) -> list[tuple[str, str]]:
    """(prompt, completion) pairs whose chain length n has weight ``multi_step_decay ** (n - 1)``.

    With a small decay the corpus is mostly single-step facts, as a base model's pre-training is
    mostly plain arithmetic; a decay of 1 is the uniform mix a teacher is trained on.
    """
    rng = random.Random(seed)
    lengths = list(range(1, max_ops + 1))
    weights = [multi_step_decay ** (n - 1) for n in lengths]
    texts = []
    for _ in range(n_texts):
        problem = arith.sample_problem(rng, rng.choices(lengths, weights)[0])
        # A direct answer is an empty trace the model writes itself, "<think></think>5", so a base
        # model sampled on a plain prompt sometimes reasons and sometimes answers at once, as
        # real base models do; a think-off prompt pre-fills the empty trace.
        trace = "" if rng.random() < think_off_fraction else problem.trace()
        texts.append((arith.prompt(problem), format_completion(trace, str(problem.answer), think=True)))
    return texts


def ladder_problems(max_ops: int, per_length: int, seed: int) -> list[arith.Problem]:
    """``per_length`` fresh problems for each chain length 1..max_ops (for accuracy reports)."""
    rng = random.Random(seed)
    return [arith.sample_problem(rng, n) for n in range(1, max_ops + 1) for _ in range(per_length)]
