"""The named choices of an experiment, each listed once.

A config names metrics, rewards and ablations by these names, and ``sparks.config.check_config``
checks every name against them before any job runs. The stage that carries a choice out binds
its implementations to the list with :func:`implement`, which refuses a dict whose names differ,
so a name cannot be valid in the config and unknown to the code (or the reverse).
Importing this module has no side effects and pulls in nothing heavy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

# How sparks.aggregate.paired computes the claims' accuracy intervals, in the report's words.
PAIRED_METHOD = (
    "accuracy intervals are over problems (a problem's samples averaged), paired where two conditions answered "
    "the same problems, replicates and problems crossed (variance components, Satterthwaite t)"
)
EMERGENCE_RULE = (
    "A head is called emergent at checkpoint t when (1) it is in t's circuit and not in the base "
    "circuit; (2) in at least the stability threshold of bootstrap resamples of the pairs, the same "
    "resampled pairs at every checkpoint, it is out of the base's resampled circuit and in t's "
    "(p_change); and (3) its exact effect (its output patched from the corrupted run) changed from the "
    "base: the paired 95 % interval of the change, over the pairs patched at both, excludes zero. Its "
    "cohort is the first such checkpoint; it is emergent if it is in the final circuit, transient if not."
)
"""When a head is called emergent (sparks.aggregate.bootstrap applies it), in the words the README and the report use."""

GIVEN = "models"
"""The method of a run whose checkpoints already exist (``runs.<name>.checkpoints``)."""

METRICS = ("kl", "logit_diff", "logprob")
"""Attribution metrics on the answer position (``attribute.metric``)."""

REWARDS = ("correctness", "format")
"""GRPO rewards (the keys of ``runs.<name>.grpo.rewards``)."""

ABLATIONS = ("mean", "zero")
"""What an ablated head's output is replaced by (``evaluate.ablation``)."""

CONTROLS = ("same_layer", "base_circuit", "outside")
"""Control heads for the interventions (``evaluate.controls``), as many as the emergent heads:
random heads of the emergent heads' layers, heads of the starting model's circuit, or heads in no
circuit of the run."""

THINK_MODES = ("both", "think_on_only", "think_off_only", "neither")
"""In which think modes' circuits a head is active (the think_modes table's ``mode``)."""

FAILURE_CATEGORIES = ("correct", "calculation_error", "loop", "truncated", "format", "no_trace", "wrong_plan")
"""Failure anatomy categories (``no_trace``: a wrong answer given without a reasoning trace;
``wrong_plan``: a trace whose every step checks out, and a wrong answer); the order of the
tables' columns and the figures' stacks."""

V = TypeVar("V")


def implement(names: tuple[str, ...], implementations: Mapping[str, V]) -> dict[str, V]:
    """``implementations`` as a dict, after checking it covers exactly ``names``."""
    if set(implementations) != set(names):
        raise RuntimeError(f"implementations {sorted(implementations)} do not match the registry names {list(names)}")
    return {name: implementations[name] for name in names}
