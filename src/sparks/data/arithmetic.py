"""Synthetic multi-step arithmetic with a chain-of-thought trace.

A problem is a chain ``a op b op c ...`` over digits, evaluated left to right, where every step
keeps only the last digit (arithmetic modulo 10), so each step is one of 200 facts the base model
learned in pre-training. Mixing ``+`` and ``*`` makes the chain serial: unlike a sum of signed
digits, it cannot be computed in one parallel pass, so a long chain needs its trace.

The trace rewrites the chain once per step, replacing its first operation by the result
(``3+4*2+9`` -> ``7*2+9`` -> ``4+9`` -> ``3``): each step is one fact at the head plus a copy of
the previous line's tail, and every step can be checked exactly against the line before it.
Formats::

    think-on   prompt "3+4*2+9="                    completion "<think>7*2+9;4+9;3</think>3"
    think-off  prompt "3+4*2+9=<think></think>"     completion "3"

Think-off pre-fills an empty trace, as Qwen3's ``/no_think`` template does. Difficulty is the
number of operations; a run's config maps difficulty names to operation counts.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from sparks.data.formats import format_completion, format_prompt

OPS = ("+", "*")
MODULUS = 10
STEP_SEP = ";"
# Smallest right operand per operator: "+0", "*0" and "*1" would make a step carry no information.
MIN_OPERAND = {"+": 1, "*": 2}
_CHAIN_RE = re.compile(r"\d([+*]\d)+")  # a chain with at least one operation


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
        """The rewritten chains inside ``<think>``: ``7*2+9;4+9;3`` for ``3+4*2+9``."""
        steps, chain = [], self.expression
        for _ in self.ops:
            chain = reduce_once(chain)
            steps.append(chain)
        return STEP_SEP.join(steps)


def apply(a: int, op: str, b: int) -> int:
    """One step: the last digit of ``a op b``."""
    if op == "+":
        return (a + b) % MODULUS
    if op == "*":
        return (a * b) % MODULUS
    raise ValueError(f"unknown operator {op!r}; expected one of {OPS}")


def reduce_once(chain: str) -> str:
    """Replace the first operation of a chain by its result: ``3+4*2`` -> ``7*2``."""
    return str(apply(int(chain[0]), chain[1], int(chain[2]))) + chain[3:]


def sample_problem(rng: random.Random, n_ops: int) -> Problem:
    """Draw a chain of ``n_ops`` operations (operators uniform, operands informative)."""
    if n_ops < 1:
        raise ValueError(f"n_ops must be >= 1 (got {n_ops})")
    operands, ops = [rng.randint(0, MODULUS - 1)], []
    for _ in range(n_ops):
        op = rng.choice(OPS)
        operands.append(rng.randint(MIN_OPERAND[op], MODULUS - 1))
        ops.append(op)
    return Problem(tuple(operands), tuple(ops))


def question(problem: Problem) -> str:
    return problem.expression + "="


def prompt(problem: Problem, think: bool = True) -> str:
    return format_prompt(question(problem), think)


def completion(problem: Problem, think: bool = True) -> str:
    return format_completion(problem.trace(), str(problem.answer), think)


def parse_expression(expression: str) -> Problem:
    """Inverse of ``Problem.expression``; raises ValueError on anything else."""
    if not _CHAIN_RE.fullmatch(expression):
        raise ValueError(f"not an arithmetic chain of single digits: {expression!r}")
    return Problem(tuple(int(c) for c in expression[0::2]), tuple(expression[1::2]))


def check_steps(expression: str, trace: str) -> list[bool]:
    """For each step of a trace, whether it is exactly the previous chain reduced once.

    A step is wrong when its head is miscalculated or its tail miscopied; a step after a wrong
    one is judged against the wrong one, so one error is counted once.
    """
    checks, previous = [], expression
    for step in trace.split(STEP_SEP) if trace else []:
        ok = bool(_CHAIN_RE.fullmatch(previous)) and step == reduce_once(previous)
        checks.append(ok)
        previous = step
    return checks
