"""Answer extraction and checking from generated text; never raises on malformed text."""

from __future__ import annotations

import re

from sparks.model.tokenizer import THINK_CLOSE, THINK_OPEN

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_FORMAT = re.compile(rf"^{re.escape(THINK_OPEN)}(?P<trace>[^<>]*){re.escape(THINK_CLOSE)}(?P<answer>[^<>]*)$", re.S)


def extract_answer(completion: str) -> str | None:
    """The answer after the last ``</think>``, or after a GSM8K-style ``####``, else None.

    Only the first number of that tail counts, so trailing chatter does not change the answer.
    """
    if not isinstance(completion, str):
        return None
    tail = completion
    if THINK_CLOSE in completion:
        tail = completion.rsplit(THINK_CLOSE, 1)[1]
    elif "####" in completion:
        tail = completion.rsplit("####", 1)[1]
    elif THINK_OPEN in completion:
        return None  # an open trace that never closed has no answer
    match = _NUMBER.search(tail.replace(",", ""))
    return match.group(0) if match else None


def is_correct(completion: str, answer: str) -> bool:
    got = extract_answer(completion)
    if got is None:
        return False
    try:
        return float(got) == float(str(answer).replace(",", ""))
    except ValueError:
        return got.strip() == str(answer).strip()


def has_think_format(completion: str) -> bool:
    """True when the text is exactly one ``<think>...</think>`` trace followed by an answer."""
    match = _FORMAT.match(completion.strip()) if isinstance(completion, str) else None
    return bool(match) and _NUMBER.fullmatch(match["answer"].strip()) is not None


def is_correct_math(completion: str, answer: str) -> bool:
    """Hub math sets: the text after the last ``</think>`` against the reference with math-verify
    (LaTeX, fractions, equivalent forms); an unclosed trace or any parse failure is wrong, never an error."""
    if not isinstance(completion, str) or (THINK_OPEN in completion and THINK_CLOSE not in completion):
        return False
    tail = completion.rsplit(THINK_CLOSE, 1)[-1]
    try:
        from math_verify import parse, verify

        return bool(verify(parse(str(answer)), parse(tail)))
    except Exception:  # math-verify raises on some malformed LaTeX; a malformed answer is a wrong answer
        return False


def answer_checker(source: str):
    """The checker for a task's source: exact numbers for synthetic tasks, math-verify for hub sets."""
    return is_correct if source == "synthetic" else is_correct_math
