"""The intervene stage's conditions and the ``evaluate`` section, without the stage: light to
import (no torch), for the workflow graph (one intervene job per condition) and ``sparks plan``."""

from __future__ import annotations

from dataclasses import dataclass

from sparks.config import Section


@dataclass(frozen=True)
class EvaluateSettings(Section):
    """The ``evaluate`` section of the config (defaults and limits in the schema; the cross-key
    checks in ``sparks.config``)."""

    SCHEMA_PATH = ("properties", "evaluate")

    n_samples: int
    temperature: float
    top_p: float
    top_k: int | None
    min_p: float
    repetition_penalty: float
    max_new_tokens: int
    batch_size: int
    k: tuple[int, ...]
    alphas: tuple[float, ...]
    ablation: str
    random_seeds: int
    controls: tuple[str, ...]
    heads: str
    think: bool
    split_interventions: bool


@dataclass(frozen=True)
class Condition:
    """One evaluation pass of the intervene stage: ablation in the final checkpoint or scaling
    in the starting one, of no heads (``none``), the intervened heads or a control's draw."""

    kind: str  # ablate | scale
    heads_from: str  # none | evaluate.heads | a control
    seed: int | None  # the control's draw
    alpha: float | None  # scale factor (scaled heads only)

    @property
    def name(self) -> str:
        """A file- and wildcard-safe name, e.g. ``scale-same_layer-1-a1.3``."""
        parts = [self.kind, self.heads_from, *([str(self.seed)] if self.seed is not None else [])]
        return "-".join([*parts, *([f"a{self.alpha:g}"] if self.alpha is not None else [])])


def conditions(settings: EvaluateSettings) -> list[Condition]:
    """Every condition the intervene stage evaluates, in the order of its tables' rows (a control
    draw that repeats an earlier one's heads, or finds no heads, gives no rows)."""

    def variants(kind: str, alpha: float | None) -> list[Condition]:
        draws = [Condition(kind, c, s, alpha) for c in settings.controls for s in range(settings.random_seeds)]
        return [Condition(kind, settings.heads, None, alpha), *draws]

    out = [Condition("ablate", "none", None, None), *variants("ablate", None)]
    for i, alpha in enumerate(settings.alphas):
        out += [Condition("scale", "none", None, None)] if i == 0 else []
        out += variants("scale", alpha)
    return out
