"""Reading and judging answers in generated text; nothing here raises on malformed text.

Three checkers, chosen by a task's source (:func:`answer_checker`), and used alike by evaluation,
the GRPO rewards, distillation's filter and the failure classifier:

- ``synthetic``: the first number after the last ``</think>`` (or a GSM8K-style ``####``) must
  equal the reference.
- ``math`` (the hub math sets): math-verify on both sides. The reference is parsed *with* math
  delimiters (a bare ``\\sqrt{2}`` or ``(1,2)`` parses to nothing, and ``2\\sqrt{3}`` to ``2``,
  without them); the completion is read after its last think-close, so the trace's working does
  not count, with ``\\boxed{}`` first, then any math the text states. Each call has a timeout.
- ``choice`` (multiple choice, GPQA): one letter A-D after the last ``</think>``, read from
  ``\\boxed{}`` first, else from the final line, must equal the reference letter.
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
_FORMAT = re.compile(rf"^{re.escape(THINK_OPEN)}(?P<trace>[^<>]*){re.escape(THINK_CLOSE)}(?P<answer>[^<>]*)$", re.DOTALL)
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


def _hub_format(completion: str, think: bool, readable: Callable[[str], bool]) -> bool:
    """Hub format: think on, one closed trace followed by a readable answer; think off, no trace
    and a readable answer."""
    if not isinstance(completion, str):
        return False
    if think:  # the opening tag may be in the prompt (R1-Distill's template pre-fills it)
        if completion.count(THINK_CLOSE) != 1 or completion.count(THINK_OPEN) > 1:
            return False
        return THINK_OPEN not in completion.split(THINK_CLOSE, 1)[1] and readable(completion)
    return THINK_OPEN not in completion and THINK_CLOSE not in completion and readable(completion)


def has_math_format(completion: str, think: bool) -> bool:
    """Hub math format (:func:`_hub_format`) with an answer math-verify can read."""
    return _hub_format(completion, think, lambda c: bool(parse_completion(c)))


# --- multiple choice (GPQA): one letter A-D --------------------------------------------------

LETTERS = "ABCD"
_BOX_TOKENS = re.compile(r"\\boxed\s*\{|[{}]")
_WRAPPER = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mathit)\s*\{([^{}]*)\}")
_LONE_LETTER = re.compile(r"[\s$*_(\[{]*([A-Da-d])[\s$*_)\]}.:]*")  # "c", "(C)", "**C**." and nothing else
_STANDING_LETTER = re.compile(r"(?<![A-Za-z0-9_\\])[A-D](?![A-Za-z0-9_])")  # a capital A-D that is not part of a word


def _boxed_contents(text: str) -> list[str]:
    """What every closed ``\\boxed{...}`` in ``text`` holds, braces matched, in one pass."""
    contents, opened, depth = [], [], 0  # opened: (where the content starts, brace depth outside the box)
    for token in _BOX_TOKENS.finditer(text):
        if token[0] == "}":
            depth -= 1
            if opened and opened[-1][1] == depth:
                contents.append(text[opened.pop()[0] : token.start()])
            continue
        if token[0] != "{":
            opened.append((token.end(), depth))
        depth += 1
    return contents


def _named_letters(text: str) -> set[str]:
    """The letters a piece of answer text names: the text itself when it is one letter (either
    case, in brackets, bold or ``\\text{}``), else every capital A-D standing alone in it."""
    for _ in range(8):  # unwrap \text{\textbf{C}} from the inside out
        text, n = _WRAPPER.subn(r"\1", text)
        if not n:
            break
    lone = _LONE_LETTER.fullmatch(text)
    return {lone[1].upper()} if lone else set(_STANDING_LETTER.findall(text))


def extract_choice(completion: str) -> str | None:
    """The letter a completion answers with, read after its last ``</think>`` (the trace's letters
    do not count): from its ``\\boxed{}`` answers (``\\boxed{C}``, ``\\boxed{\\text{(C)}}``), else from
    its final line ("Answer: C", "The answer is (C).", "**C**"). None when that names no letter or
    two different ones (a hedge is not an answer), or when the trace never closed."""
    tail = answer_tail(completion)
    if tail is None:
        return None
    named: set[str] = set()
    for content in _boxed_contents(tail):
        named |= _named_letters(content)
    if not named:  # no box, or boxes that name no letter: the final line
        lines = [line for line in tail.splitlines() if line.strip()]
        named = _named_letters(lines[-1]) if lines else set()
    return named.pop() if len(named) == 1 else None


def choice_reference(answer: str) -> str | None:
    """The reference letter (``C`` or ``(c)``), upper-cased; None when it is not one of A-D."""
    text = str(answer).strip().strip("()").strip().upper()
    return text if len(text) == 1 and text in LETTERS else None


def is_correct_choice(completion: str, answer: str) -> bool:
    """Multiple choice: the completion's letter (:func:`extract_choice`) equals the reference's;
    wrong, never an error, on anything malformed."""
    got = extract_choice(completion)
    return got is not None and got == choice_reference(answer)


def has_choice_format(completion: str, think: bool) -> bool:
    """Hub format (:func:`_hub_format`) with one letter as the answer."""
    return _hub_format(completion, think, lambda c: extract_choice(c) is not None)


@dataclass(frozen=True)
class AnswerChecker:
    """How one kind of task reads answers: ``extract`` (the answer a completion states, or None),
    ``is_correct`` (completion, reference), ``well_formed`` (completion, think) for the format
    reward and ``reads_reference`` (reference): whether a reference can be matched at all (the hub
    loaders skip records whose reference cannot)."""

    name: str
    extract: Callable[[str], str | None]
    is_correct: Callable[[str, str], bool]
    well_formed: Callable[[str, bool], bool]
    reads_reference: Callable[[str], bool]


SYNTHETIC = AnswerChecker(
    "synthetic",
    extract_answer,
    is_correct,
    lambda c, think: has_think_format(c) if think else is_direct_answer(c),
    lambda a: _NUMBER.fullmatch(str(a).strip()) is not None,
)
MATH = AnswerChecker("math", extract_math_answer, is_correct_math, has_math_format, lambda a: bool(parse_reference(a)))
CHOICE = AnswerChecker("choice", extract_choice, is_correct_choice, has_choice_format, lambda a: choice_reference(a) is not None)
CHECKERS = {checker.name: checker for checker in (SYNTHETIC, MATH, CHOICE)}


# A source's checker, where it is not math-verify (every other hub set): the data loaders read
# their references with it too (sparks.data.hub).
SOURCE_CHECKERS = {"synthetic": "synthetic", "gpqa": "choice"}


def answer_checker(source: str) -> AnswerChecker:
    """The checker for a task's source (or a checker's name): exact numbers for synthetic tasks,
    letters for multiple-choice sets (gpqa), math-verify for every other."""
    return CHECKERS.get(source) or CHECKERS[SOURCE_CHECKERS.get(source, "math")]
