"""Failure anatomy: one category per sampled completion, computed from its text alone.

Categories, in the order they are decided (the first that applies):

- ``correct``: the extracted answer is right;
- ``loop``: the text repeats itself: a step that occurs ``loop_repeats`` times, or a run of
  ``loop_ngram`` characters that occurs ``loop_repeats`` times (with or without the token limit);
- ``truncated``: the token limit was hit without such a repetition;
- ``format``: no closing ``</think>`` after an opened trace, or no extractable answer;
- ``calculation_error``: a step of the trace does not check out (synthetic: the step is not the
  previous chain reduced once, miscalculated or miscopied; hub sets: an ``a op b = c`` equality in
  the step is false, checked with exact fractions);
- ``no_trace``: a wrong answer given without a reasoning trace (no step before it);
- ``wrong_plan``: the trace has steps, every one checks out, and the answer is still wrong.

``first_bad_step`` (0-based) is reported for every sample whose trace has a wrong step, whatever
its category; ``answer_abandoned`` marks a wrong sample whose trace had already reached the right
answer (a step equal to it, or ``= answer`` in a hub trace): over-thinking past a correct answer.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from functools import cache

from sparks.config import Section
from sparks.data.arithmetic import STEP_SEP, check_steps
from sparks.model.tokenizer import THINK_CLOSE, THINK_OPEN

_NUMBER = r"-?\d+(?:\.\d+)?"
_EQUALITY = re.compile(rf"({_NUMBER})\s*([-+*/×÷x])\s*({_NUMBER})\s*=\s*({_NUMBER})")


@dataclass(frozen=True)
class FailureSettings(Section):
    """The ``failures`` section of the config (defaults and limits in the schema)."""

    SCHEMA_PATH = ("properties", "failures")

    loop_repeats: int
    loop_ngram: int


@dataclass(frozen=True)
class Failure:
    category: str
    n_steps: int
    first_bad_step: int | None
    bad_step: str | None  # the text of the first wrong step
    answer_abandoned: bool


@cache
def _default_settings() -> FailureSettings:
    return FailureSettings.defaults()


def trace_of(completion: str) -> tuple[str, bool]:
    """The text inside the trace (up to ``</think>`` or the end) and whether it was closed."""
    text = completion.split(THINK_OPEN, 1)[1] if THINK_OPEN in completion else completion
    if THINK_CLOSE in text:
        return text.split(THINK_CLOSE, 1)[0], True
    return text, THINK_OPEN not in completion  # a completion that never opened a trace has none to close


def split_steps(trace: str, synthetic: bool) -> list[str]:
    parts = trace.split(STEP_SEP) if synthetic else trace.splitlines()
    return [p.strip() for p in parts if p.strip()]


def _apply(a: Fraction, op: str, b: Fraction) -> Fraction | None:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op in "*×x":
        return a * b
    return None if b == 0 else a / b


def equality_checks(steps: list[str]) -> list[bool]:
    """Hub traces: a step is wrong when one of its ``a op b = c`` equalities is false."""
    checks = []
    for step in steps:
        ok = True
        for a, op, b, c in _EQUALITY.findall(step.replace(",", "")):
            value = _apply(Fraction(a), op, Fraction(b))
            decimals = len(c.split(".")[1]) if "." in c else 0
            if value is not None and abs(value - Fraction(c)) > Fraction(1, 2 * 10**decimals):  # c is rounded
                ok = False
                break
        checks.append(ok)
    return checks


def repeats(text: str, steps: list[str], settings: FailureSettings) -> bool:
    """A step occurring ``loop_repeats`` times, or a ``loop_ngram``-character run occurring that
    often without overlapping itself (linear in the text's length)."""
    if steps and max(Counter(steps).values()) >= settings.loop_repeats:
        return True
    n = settings.loop_ngram
    last: dict[str, int] = {}
    counts: Counter[str] = Counter()
    for i in range(len(text) - n + 1):
        gram = text[i : i + n]
        if gram not in last or i - last[gram] >= n:  # count non-overlapping occurrences
            counts[gram] += 1
            last[gram] = i
            if counts[gram] >= settings.loop_repeats:
                return True
    return False


def classify(
    question: str,
    completion: str | None,
    expected: str,
    correct: bool,
    n_tokens: int,
    max_new_tokens: int,
    synthetic: bool,
    settings: FailureSettings | None = None,
    source: str | None = None,
) -> Failure:
    """The category of one sample, from its text (see the module docstring); never raises.
    ``settings`` default to the schema's; ``source``: the task's, whose answer checker judges the
    format (default: synthetic or math)."""
    from sparks.data.answers import answer_checker

    settings = settings or _default_settings()

    text = completion if isinstance(completion, str) else ""
    trace, closed = trace_of(text)
    steps = split_steps(trace, synthetic)
    if synthetic:
        checks = check_steps(question.rstrip("="), STEP_SEP.join(steps)) if steps else []
        reached = expected in steps
    else:
        checks = equality_checks(steps)
        reached = re.search(rf"=\s*{re.escape(expected)}(?!\d|\.\d)", trace.replace(",", "")) is not None
    first_bad = next((i for i, ok in enumerate(checks) if not ok), None)
    bad_step = None if first_bad is None else steps[first_bad]
    if correct:
        category = "correct"
    elif repeats(trace, steps, settings):
        category = "loop"
    elif n_tokens >= max_new_tokens:
        category = "truncated"
    elif not closed or answer_checker(source or ("synthetic" if synthetic else "math")).extract(text) is None:
        category = "format"
    elif first_bad is not None:
        category = "calculation_error"
    elif not steps:
        category = "no_trace"
    else:
        category = "wrong_plan"
    return Failure(category, len(steps), first_bad, bad_step, reached and not correct)
