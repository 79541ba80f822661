"""Synthetic multi-step arithmetic with a chain-of-thought trace.

A problem is a chain ``a op b op c ...`` over single digits, every intermediate value kept in
0..9, so each step is one fact the base model learned in pre-training. Formats::

    think-on   prompt "3+4-2="                      completion "<think>3+4=7;7-2=5</think>5"
    think-off  prompt "3+4-2=<think></think>"       completion "5"

Think-off pre-fills an empty trace, as Qwen3's ``/no_think`` template does. Difficulty is the
number of operations; a run's config maps difficulty names to operation counts.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from sparks.model.tokenizer import THINK_CLOSE, THINK_OPEN

OPS = ("+", "-")
STEP_SEP = ";"
MAX_VALUE = 9
_STEP_RE = re.compile(r"^(\d)([+-])(\d)=(\d+)$")


@dataclass(frozen=True)
class Problem:
    """One arithmetic chain: ``operands[0] ops[0] operands[1] ...``."""

    operands: tuple[int, ...]
    ops: tuple[str, ...]

    @property
    def expression(self) -> str:
        parts = [str(self.operands[0])]
        for op, b in zip(self.ops, self.operands[1:]):
            parts += [op, str(b)]
        return "".join(parts)

    def values(self) -> list[int]:
        """Running values after each step: ``values()[-1]`` is the answer."""
        out, value = [], self.operands[0]
        for op, b in zip(self.ops, self.operands[1:]):
            value = apply(value, op, b)
            out.append(value)
        return out

    @property
    def answer(self) -> int:
        return self.values()[-1]

    def trace(self) -> str:
        """The step list inside ``<think>``: ``3+4=7;7-2=5``."""
        steps, value = [], self.operands[0]
        for op, b, result in zip(self.ops, self.operands[1:], self.values()):
            steps.append(f"{value}{op}{b}={result}")
            value = result
        return STEP_SEP.join(steps)


def apply(a: int, op: str, b: int) -> int:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    raise ValueError(f"unknown operator {op!r}; expected one of {OPS}")


def sample_problem(rng: random.Random, n_ops: int) -> Problem:
    """Draw a chain of ``n_ops`` operations whose every running value stays in 0..9."""
    if n_ops < 1:
        raise ValueError(f"n_ops must be >= 1 (got {n_ops})")
    value = rng.randint(0, MAX_VALUE)
    operands, ops = [value], []
    for _ in range(n_ops):
        choices = [op for op in OPS if (op == "+" and value < MAX_VALUE) or (op == "-" and value > 0)]
        op = rng.choice(choices)
        b = rng.randint(1, MAX_VALUE - value) if op == "+" else rng.randint(1, value)
        value = apply(value, op, b)
        operands.append(b)
        ops.append(op)
    return Problem(tuple(operands), tuple(ops))


def prompt(problem: Problem, think: bool = True) -> str:
    base = problem.expression + "="
    return base if think else base + THINK_OPEN + THINK_CLOSE


def completion(problem: Problem, think: bool = True) -> str:
    if think:
        return f"{THINK_OPEN}{problem.trace()}{THINK_CLOSE}{problem.answer}"
    return str(problem.answer)


def parse_expression(expression: str) -> Problem:
    """Inverse of ``Problem.expression``; raises ValueError on anything else."""
    if not re.fullmatch(r"\d([+-]\d)+", expression):
        raise ValueError(f"not an arithmetic chain of single digits: {expression!r}")
    return Problem(tuple(int(c) for c in expression[0::2]), tuple(expression[1::2]))


def check_steps(trace: str) -> list[bool]:
    """For each ``a op b = c`` step of a trace, whether its arithmetic is right."""
    checks = []
    for step in filter(None, trace.split(STEP_SEP)):
        match = _STEP_RE.match(step)
        checks.append(bool(match) and apply(int(match[1]), match[2], int(match[3])) == int(match[4]))
    return checks
