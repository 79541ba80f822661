"""GRPO reward functions, by name. Each is ``(completions, answer, **columns) -> list[float]``
as TRL's GRPOTrainer calls them; extra dataset columns arrive as keyword arguments."""

from __future__ import annotations

from collections.abc import Callable

from sparks import registry
from sparks.data.answers import answer_checker


def correctness(completions: list[str], answer: list[str], source: list[str], **_: object) -> list[float]:
    """1 when the completion's answer equals the reference under its task's checker
    (:func:`sparks.data.answers.answer_checker`: exact numbers, or math-verify for hub sets), else 0."""
    return [float(answer_checker(s).is_correct(c, a)) for c, a, s in zip(completions, answer, source)]


def think_format(completions: list[str], think: list[bool], source: list[str], **_: object) -> list[float]:
    """1 for a well-formed reply in its task's format: thinking, a closed trace and then an answer
    (a bare number for synthetic tasks, anything math-verify reads for hub sets); not thinking, an
    answer without a trace."""
    return [float(answer_checker(s).well_formed(c, t)) for c, t, s in zip(completions, think, source)]


REWARDS: dict[str, Callable[..., list[float]]] = registry.implement(
    registry.REWARDS, {"correctness": correctness, "format": think_format}
)


def weighted_rewards(weights: dict[str, float]) -> tuple[list[Callable[..., list[float]]], list[float]]:
    """The reward callables and weights named in a run's ``grpo.rewards``."""
    unknown = [name for name in weights if name not in REWARDS]
    if unknown:
        raise KeyError(f"unknown reward {unknown[0]!r} in grpo.rewards; valid rewards: {', '.join(REWARDS)}")
    return [REWARDS[name] for name in weights], list(weights.values())
