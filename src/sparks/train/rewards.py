"""GRPO reward functions, by name. Each is ``(completions, answer, **columns) -> list[float]``
as TRL's GRPOTrainer calls them; extra dataset columns arrive as keyword arguments."""

from __future__ import annotations

from collections.abc import Callable

from sparks import registry
from sparks.data.answers import extract_answer, has_think_format, is_correct


def correctness(completions: list[str], answer: list[str], **_: object) -> list[float]:
    """1 when the extracted answer equals the reference, else 0."""
    return [float(is_correct(c, a)) for c, a in zip(completions, answer)]


def think_format(completions: list[str], think: list[bool], **_: object) -> list[float]:
    """1 for a well-formed reply: ``<think>trace</think>answer`` when thinking, a bare answer when not."""
    return [
        float(has_think_format(c) if t else (extract_answer(c) is not None and c.strip() == extract_answer(c)))
        for c, t in zip(completions, think)
    ]


REWARDS: dict[str, Callable[..., list[float]]] = registry.implement(
    registry.REWARDS, {"correctness": correctness, "format": think_format}
)


def weighted_rewards(weights: dict[str, float]) -> tuple[list[Callable[..., list[float]]], list[float]]:
    """The reward callables and weights named in a run's ``grpo.rewards``."""
    unknown = [name for name in weights if name not in REWARDS]
    if unknown:
        raise KeyError(f"unknown reward {unknown[0]!r} in grpo.rewards; valid rewards: {', '.join(REWARDS)}")
    return [REWARDS[name] for name in weights], list(weights.values())
