"""GRPO reward functions, by name. Each is ``(completions, answer, **columns) -> list[float]``
as TRL's GRPOTrainer calls them; extra dataset columns arrive as keyword arguments."""

from __future__ import annotations

from collections.abc import Callable

from sparks import registry
from sparks.data.answers import answer_checker
from sparks.data.prompting import Prompter


def _replies(completions: list[str], prompts: list[str] | None) -> list[str]:
    """Each completion after the ``<think>`` its prompt opened, if any (TRL passes the prompts)."""
    return completions if prompts is None else [Prompter.reply_text(p, c) for p, c in zip(prompts, completions)]


def correctness(
    completions: list[str], answer: list[str], source: list[str], prompts: list[str] | None = None, **_: object
) -> list[float]:
    """1 when the completion's answer equals the reference under its task's checker
    (:func:`sparks.data.answers.answer_checker`: exact numbers, or math-verify for hub sets), else 0."""
    return [float(answer_checker(s).is_correct(c, a)) for c, a, s in zip(_replies(completions, prompts), answer, source)]


def think_format(
    completions: list[str], think: list[bool], source: list[str], prompts: list[str] | None = None, **_: object
) -> list[float]:
    """1 for a well-formed reply in its task's format: thinking, a closed trace and then an answer
    (a bare number for synthetic tasks, anything math-verify reads for hub sets); not thinking, an
    answer without a trace."""
    return [float(answer_checker(s).well_formed(c, t)) for c, t, s in zip(_replies(completions, prompts), think, source)]


REWARDS: dict[str, Callable[..., list[float]]] = registry.implement(
    registry.REWARDS, {"correctness": correctness, "format": think_format}
)


def weighted_rewards(weights: dict[str, float]) -> tuple[list[Callable[..., list[float]]], list[float]]:
    """The reward callables and weights named in a run's ``grpo.rewards``."""
    unknown = [name for name in weights if name not in REWARDS]
    if unknown:
        raise KeyError(f"unknown reward {unknown[0]!r} in grpo.rewards; valid rewards: {', '.join(REWARDS)}")
    return [REWARDS[name] for name in weights], list(weights.values())
