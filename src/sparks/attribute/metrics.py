"""Attribution metrics on the answer position, per example (a registry by config name).

Each metric takes the logits at the answer position of a (possibly patched) run and returns one
value per example. Faithfulness uses the same function: ``(m(circuit) - m(corrupt)) /
(m(model) - m(corrupt))``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from sparks import registry


@dataclass(frozen=True)
class Targets:
    """What a metric compares against, for one batch of pairs."""

    clean_logits: torch.Tensor  # [batch, vocab] the unpatched model on the clean prompts
    clean_answer: torch.Tensor  # [batch] token id of the clean answer's first token
    corrupt_answer: torch.Tensor | None  # [batch] token id of the corrupted answer (None when unknown)

    def repeat(self, times: int) -> Targets:
        """The same targets for ``times`` stacked copies of the batch (IG steps)."""
        corrupt = None if self.corrupt_answer is None else self.corrupt_answer.repeat(times)
        return Targets(self.clean_logits.repeat(times, 1), self.clean_answer.repeat(times), corrupt)


def _full(logits: torch.Tensor) -> torch.Tensor:
    """At least float32 (half-precision logits are upcast; float64 ones are kept)."""
    return logits if logits.dtype == torch.float64 else logits.float()


def kl_divergence(logits: torch.Tensor, targets: Targets) -> torch.Tensor:
    """KL(clean || patched) in nats; 0 for the clean run itself."""
    clean = torch.log_softmax(_full(targets.clean_logits), dim=-1)  # [batch, vocab]
    patched = torch.log_softmax(_full(logits), dim=-1)  # [batch, vocab]
    return (clean.exp() * (clean - patched)).sum(-1)


def logit_difference(logits: torch.Tensor, targets: Targets) -> torch.Tensor:
    """logit(clean answer) - logit(corrupted answer)."""
    if targets.corrupt_answer is None:
        raise ValueError(
            "metric logit_diff needs the corrupted answer, which these pairs do not have (hub tasks); "
            "use attribute.metric: kl or logprob"
        )
    logits = _full(logits)
    rows = torch.arange(len(logits), device=logits.device)
    return logits[rows, targets.clean_answer] - logits[rows, targets.corrupt_answer]


def answer_logprob(logits: torch.Tensor, targets: Targets) -> torch.Tensor:
    """log p(clean answer)."""
    logprobs = torch.log_softmax(_full(logits), dim=-1)  # [batch, vocab]
    return logprobs[torch.arange(len(logits), device=logits.device), targets.clean_answer]


METRICS: dict[str, Callable[[torch.Tensor, Targets], torch.Tensor]] = registry.implement(
    registry.METRICS, {"kl": kl_divergence, "logit_diff": logit_difference, "logprob": answer_logprob}
)


def metric(name: str) -> Callable[[torch.Tensor, Targets], torch.Tensor]:
    if name not in METRICS:
        raise KeyError(f"unknown attribution metric {name!r}; choose one of: {', '.join(METRICS)}")
    return METRICS[name]
