"""Reading and judging answers in generated text; nothing here raises on malformed text.

Two checkers, chosen by a task's source (:func:`answer_checker`), and used alike by evaluation,
the GRPO rewards, distillation's filter and the failure classifier:

- ``synthetic``: the first number after the last ``</think>`` (or a GSM8K-style ``####``) must
  equal the reference.
- ``math`` (every hub set): math-verify on both sides. The reference is parsed *with* math
  delimiters (a bare ``\\sqrt{2}`` or ``(1,2)`` parses to nothing, and ``2\\sqrt{3}`` to ``2``,
  without them); the completion is read after its last think-close, so the trace's working does
  not count, with ``\\boxed{}`` first, then any math the text states. Each call has a timeout.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from sparks.model.tokenizer import THINK_CLOSE, THINK_OPEN

log = logging.getLogger(__name__)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_FORMAT = re.compile(rf"^{re.escape(THINK_OPEN)}(?P<trace>[^<>]*){re.escape(THINK_CLOSE)}(?P<answer>[^<>]*)$", re.S)
_GSM8K_MARK = "####"
_DELIMITED = re.compile(r"\$|\\\(|\\\[|\\boxed")
TIMEOUT_SECONDS = 5  # per parse and per comparison; a pathological expression counts as wrong


def answer_tail(completion: str) -> str | None:
    """The text after the last ``</think>``, or after ``####`` (GSM8K's answer line), or the
    whole text when it has no trace; None for a trace that never closed (it has no answer)."""
    if not isinstance(completion, str):
        return None
    if THINK_CLOSE in completion:
        return completion.rsplit(THINK_CLOSE, 1)[1]
    if THINK_OPEN in completion:
        return None
    if _GSM8K_MARK in completion:
        return completion.rsplit(_GSM8K_MARK, 1)[1]
    return completion


def extract_answer(completion: str) -> str | None:
    """The first number of the answer tail (:func:`answer_tail`), so trailing chatter does not change it."""
    tail = answer_tail(completion)
    if tail is None:
        return None
    if _GSM8K_MARK in tail:
        tail = tail.rsplit(_GSM8K_MARK, 1)[1]
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
    """True when the text is exactly one ``<think>...</think>`` trace followed by a bare number."""
    match = _FORMAT.match(completion.strip()) if isinstance(completion, str) else None
    return bool(match) and _NUMBER.fullmatch(match["answer"].strip()) is not None


def is_direct_answer(completion: str) -> bool:
    """True when the text is a bare number and nothing else (the think-off format)."""
    got = extract_answer(completion)
    return got is not None and completion.strip() == got


# --- hub math: math-verify on both sides ---------------------------------------------------


def _parse(text: str, fallback: bool = True) -> list:
    """math-verify's parse; without ``fallback`` text it cannot read as math gives [] instead of itself."""
    from math_verify import parse

    try:
        return parse(text, fallback_mode="first_match" if fallback else "no_fallback", parsing_timeout=TIMEOUT_SECONDS)
    except Exception:  # math-verify raises on some malformed LaTeX (and on timeouts off the main thread)
        return []


@functools.lru_cache(maxsize=65536)
def parse_reference(answer: str) -> tuple:
    """The reference answer parsed by math-verify, with ``$...$`` added when it has no delimiters
    (GSM8K's ``#### 1,234`` line is read after the mark); an empty tuple when it is not math
    math-verify can read (malformed LaTeX is not kept as a string to compare texts with)."""
    text = str(answer).strip()
    if _GSM8K_MARK in text:
        text = text.rsplit(_GSM8K_MARK, 1)[1].strip()
    if not _DELIMITED.search(text):
        text = f"${text}$"
    return tuple(_parse(text, fallback=False))


def parse_completion(completion: str) -> list:
    """math-verify's reading of a completion's answer tail (``\\boxed{}`` first); [] when none."""
    tail = answer_tail(completion)
    return [] if tail is None or not tail.strip() else _parse(tail)


def is_correct_math(completion: str, answer: str) -> bool:
    """Hub math sets: the completion's answer tail against the reference with math-verify
    (LaTeX, fractions, radicals, intervals, equivalent forms); wrong, never an error, on anything
    malformed, on a trace that never closed, and on a reference that does not parse."""
    gold = parse_reference(answer)
    if not gold:
        return False
    got = parse_completion(completion)
    if not got:
        return False
    from math_verify import verify

    try:
        return bool(verify(list(gold), got, timeout_seconds=TIMEOUT_SECONDS))
    except Exception:
        return False


def extract_math_answer(completion: str) -> str | None:
    """The answer math-verify read from a completion, as the text it matched; None when none."""
    got = parse_completion(completion)
    return str(got[-1]) if got else None


def has_math_format(completion: str, think: bool) -> bool:
    """Hub format: think on, one closed trace followed by an answer math-verify can read; think
    off, no trace and a readable answer."""
    if not isinstance(completion, str):
        return False
    if think:  # the opening tag may be in the prompt (R1-Distill's template pre-fills it)
        if completion.count(THINK_CLOSE) != 1 or completion.count(THINK_OPEN) > 1:
            return False
        return THINK_OPEN not in completion.split(THINK_CLOSE, 1)[1] and bool(parse_completion(completion))
    return THINK_OPEN not in completion and THINK_CLOSE not in completion and bool(parse_completion(completion))


@dataclass(frozen=True)
class AnswerChecker:
    """How one kind of task reads answers: ``extract`` (the answer a completion states, or None),
    ``is_correct`` (completion, reference) and ``well_formed`` (completion, think) for the format reward."""

    name: str
    extract: Callable[[str], str | None]
    is_correct: Callable[[str, str], bool]
    well_formed: Callable[[str, bool], bool]


SYNTHETIC = AnswerChecker(
    "synthetic", extract_answer, is_correct, lambda c, think: has_think_format(c) if think else is_direct_answer(c)
)
MATH = AnswerChecker("math", extract_math_answer, is_correct_math, has_math_format)


def answer_checker(source: str) -> AnswerChecker:
    """The checker for a task's source: exact numbers for synthetic tasks, math-verify for hub sets."""
    return SYNTHETIC if source == "synthetic" else MATH
