"""Post-training methods, one descriptor each: what sparks must know of a method to check a
config, wire its jobs and plan its cost, without importing TRL or torch (a method's code is named
as ``module:function`` and imported by the stage that runs it).

Adding a training method is one module with its builder (the signature of
``sparks.train.methods.sft``: it returns a ready TRL trainer) and one :func:`register` call;
``runs.<name>.method`` then accepts its name, the train job reads its ``inputs``, ``sparks plan``
prices it with its ``cost`` and ``runs.<name>.trainer`` is checked against its TRL dataclass.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sparks.registry import GIVEN

# What a run's cost model is given: the run's section, tokens per prompt and per training example
# (upper bounds from the task), the model's parameters, and sparks.plan.Throughput.
Cost = Callable[[Mapping[str, Any], int, int, float, Any], float]
# What a run's memory model is given: the run's section, tokens per prompt, the model's
# sparks.memory.Shape and the train job's resources (gpus, strategy); it returns the peak per GPU.
Memory = Callable[[Mapping[str, Any], int, Any, Mapping[str, Any]], Any]


def _load(spec: str) -> Callable[..., Any]:
    """The function a ``module:function`` spec names, imported now (a method's code is heavy)."""
    module, function = spec.split(":")
    return getattr(importlib.import_module(module), function)


# TRL fields sparks sets for every method from its own keys: refused in runs.<name>.trainer, with the
# key to use instead (a method adds its own: TrainingMethod.owned).
TRAINER_OWNED = {
    "output_dir": "nothing: checkpoints go beside the run's manifest (sparks.layout)",
    "max_steps": "runs.{run}.max_steps",
    "num_train_epochs": "runs.{run}.max_steps (sparks counts optimiser steps)",
    "save_steps": "runs.{run}.save_steps",
    "save_strategy": "runs.{run}.save_steps",
    "save_total_limit": "nothing: sparks keeps every checkpoint (the study reads them all)",
    "learning_rate": "runs.{run}.learning_rate",
    "warmup_steps": "runs.{run}.warmup_ratio",
    "warmup_ratio": "runs.{run}.warmup_ratio",
    "per_device_train_batch_size": "runs.{run}.micro_batch_size (and batch_size, the examples per optimiser step)",
    "gradient_accumulation_steps": "runs.{run}.micro_batch_size (accumulation = batch_size / (micro_batch_size x GPUs))",
    "seed": "runs.{run}.seed or runs.{run}.seeds",
    "data_seed": "runs.{run}.seed or runs.{run}.seeds",
    "gradient_checkpointing": "runs.{run}.gradient_checkpointing",
    "activation_checkpointing": "runs.{run}.gradient_checkpointing",
    "max_length": "runs.{run}.max_length",
    "completion_only_loss": "nothing: sparks trains on completions only",
}


@dataclass(frozen=True)
class TrainingMethod:
    """A training method (``runs.<name>.method``)."""

    name: str
    builder: str  # "module:function" returning a ready TRL trainer
    trl_config: str  # the TRL dataclass runs.<name>.trainer is handed to
    cost: Cost  # estimated GPU-hours of one run
    memory: Memory | None = None  # estimated peak memory per GPU (sparks.memory.Estimate); None: supervised
    completion: Callable[[Mapping[str, Any], int], int] | None = None  # longest trained completion; None: max_length - prompt
    inputs: tuple[str, ...] = ()  # files the train job reads beyond the base and the problems (a sparks.layout name)
    owned: Mapping[str, str] = field(default_factory=dict)  # TRL fields it sets from sparks keys: field -> the key to use

    @property
    def all_owned(self) -> dict[str, str]:
        """Every TRL field sparks sets for this method -> the sparks key to use instead."""
        return {**TRAINER_OWNED, **self.owned}

    def build(self) -> Callable[..., Any]:
        return _load(self.builder)

    def longest_completion(self, run: Mapping[str, Any], prompt: int) -> int:
        """The longest completion, in tokens, a run of this method trains on (given ~``prompt``-token prompts)."""
        return self.completion(run, prompt) if self.completion else run["max_length"] - prompt

    def peak_memory(self, run: Mapping[str, Any], prompt: int, shape: Any, job: Mapping[str, Any]) -> Any:
        return (self.memory or _supervised_memory)(run, prompt, shape, job)


TRAINING: dict[str, TrainingMethod] = {}


@dataclass(frozen=True)
class AttributionMethod:
    """A way of scoring a checkpoint's heads and edges (``attribute.method``): ``scorer`` is
    ``module:function`` taking (model, pair batches, metric, the attribute settings, edges: bool)
    and returning sparks.attribute.eap.EdgeScores (heads, edges and each pair's edges); the
    attribute stage builds every table from those."""

    name: str
    scorer: str

    def build(self) -> Callable[..., Any]:
        return _load(self.scorer)


ATTRIBUTION: dict[str, AttributionMethod] = {}


def register(method: TrainingMethod | AttributionMethod) -> TrainingMethod | AttributionMethod:
    """Make ``method`` known by its name (a name registered twice is refused)."""
    known = TRAINING if isinstance(method, TrainingMethod) else ATTRIBUTION
    if method.name in known or method.name == GIVEN:
        raise ValueError(f"a method named {method.name!r} is registered already")
    known[method.name] = method
    return method


def attribution_method(name: str) -> AttributionMethod:
    if name not in ATTRIBUTION:
        raise KeyError(f"no attribution method {name!r}; known: {', '.join(ATTRIBUTION)}")
    return ATTRIBUTION[name]


def attribution_names() -> tuple[str, ...]:
    return tuple(ATTRIBUTION)


def training_method(name: str) -> TrainingMethod:
    if name not in TRAINING:
        raise KeyError(f"no training method {name!r}; known: {', '.join(TRAINING)}")
    return TRAINING[name]


def method_names() -> tuple[str, ...]:
    """Every value ``runs.<name>.method`` takes: the training methods and ``models`` (given checkpoints)."""
    return (*TRAINING, GIVEN)


def micro_batches(run: Mapping[str, Any], processes: int) -> tuple[int, int]:
    """Examples per GPU per forward and backward, and the micro-batches accumulated per optimiser
    step, so that each step sees ``batch_size`` examples over ``processes`` GPUs."""
    share, rest = divmod(run["batch_size"], processes)
    micro = run["micro_batch_size"] or share
    accumulation, left = divmod(share, micro) if share else (0, 0)
    if rest or left or not accumulation:
        raise ValueError(
            f"batch_size = {run['batch_size']} examples per step is not a multiple of micro_batch_size ({micro}) "
            f"x GPUs ({processes}); change runs.<name>.batch_size or runs.<name>.micro_batch_size"
        )
    return micro, accumulation


def _supervised_memory(run: Mapping[str, Any], prompt: int, shape: Any, job: Mapping[str, Any]) -> Any:
    """The longest example (max_length) in every row of a micro-batch."""
    from sparks import memory

    micro, accumulation = micro_batches(run, job["gpus"])
    return memory.training(
        shape, micro, run["max_length"], gpus=job["gpus"], strategy=job["strategy"],
        checkpointing=run["gradient_checkpointing"], activation_bytes=memory.BFLOAT16, accumulation=accumulation,
    )  # fmt: skip


def _grpo_memory(run: Mapping[str, Any], prompt: int, shape: Any, job: Mapping[str, Any]) -> Any:
    """A micro-batch of full-length completions, or the KV cache of every completion a GPU samples
    per step (TRL generates the step's batch at once), whichever is larger; the reference model
    when beta > 0."""
    from sparks import memory

    g = run["grpo"]
    micro, accumulation = micro_batches(run, job["gpus"])
    tokens = prompt + g["max_completion_length"]
    return memory.training(
        shape, micro, tokens, gpus=job["gpus"], strategy=job["strategy"], checkpointing=run["gradient_checkpointing"],
        activation_bytes=memory.BFLOAT16, generation_rows=run["batch_size"] // job["gpus"], generation_tokens=tokens,
        reference=g["beta"] > 0, accumulation=accumulation,
    )  # fmt: skip


def _supervised(run: Mapping[str, Any], prompt: int, example: int, params: float, t: Any) -> float:
    """One forward and backward (6 FLOPs per parameter and token) of every example token."""
    return t.compute_hours(6 * params * run["max_steps"] * run["batch_size"] * example)


def _grpo(run: Mapping[str, Any], prompt: int, example: int, params: float, t: Any) -> float:
    """Sampling every completion to its limit, then ``num_iterations`` updates on prompt and completion."""
    g = run["grpo"]
    samples = run["max_steps"] * run["batch_size"]
    hours = t.generation_hours(samples * g["max_completion_length"], params, bool(run["trainer"].get("use_vllm")))
    return hours + t.compute_hours(6 * params * samples * (prompt + g["max_completion_length"]) * g["num_iterations"])


_GRPO_KEYS = ("num_generations", "temperature", "beta", "scale_rewards", "num_iterations", "max_completion_length")
register(TrainingMethod("sft", "sparks.train.methods:sft", "SFTConfig", _supervised))
register(
    TrainingMethod(
        "distill",
        "sparks.train.methods:distill",
        "SFTConfig",
        _supervised,
        inputs=("teacher_traces",),
        completion=lambda run, prompt: min(run["distill"]["max_new_tokens"], run["max_length"] - prompt),
    )
)
register(
    TrainingMethod(
        "grpo",
        "sparks.train.methods:grpo",
        "GRPOConfig",
        _grpo,
        _grpo_memory,
        completion=lambda run, prompt: run["grpo"]["max_completion_length"],
        owned={"reward_weights": "runs.{run}.grpo.rewards", **{key: f"runs.{{run}}.grpo.{key}" for key in _GRPO_KEYS}},
    )
)
register(AttributionMethod("eap_ig", "sparks.attribute.eap:score"))
