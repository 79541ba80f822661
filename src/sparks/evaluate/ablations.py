"""Every head of a starting model ablated alone: the samples behind the calculation_heads table.

The model (a prepared model folder) samples the task's eval problems with the ``evaluate``
settings once unablated and once per head with that one head ablated (``evaluate.ablation``: its
output replaced by its mean over the eval prompts, or by zero, as the intervene stage does).
Every condition samples with the same seed (``config["seed"]``), so that the comparison is
paired: a sample differs from its unablated twin only through the head. The samples are an
``intervention_samples`` table (kind ablate; ``heads_from`` none, or the head's name, e.g. a1.h3);
the failures stage classifies them (:mod:`sparks.failures.calculation`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import polars as pl

log = logging.getLogger(__name__)


def head_ablations_stage(
    config: dict[str, Any], model_dir: Path, task: str, problems_path: Path, out: Path, role: str | None = None
) -> Path:
    """Write the samples of the model in ``model_dir`` on ``task``'s eval problems, unablated and
    with each head ablated alone (see the module docstring), to ``out``. Provenance: run =
    ``role`` (default: the folder's name, e.g. ``base``), step 0."""
    from sparks.config import config_hash
    from sparks.data.prompting import Prompter
    from sparks.data.tasks import eval_problems
    from sparks.evaluate import EvaluateSettings, sample_table
    from sparks.evaluate.interventions import HeadIntervention, head_means
    from sparks.generate import GenerationSettings
    from sparks.model.load import load_checkpoint, model_hash
    from sparks.model.store import resolve
    from sparks.tables import with_provenance, write_table
    from sparks.types import HeadId

    settings = EvaluateSettings.from_config(config)
    if GenerationSettings.from_config(config).backend != "hf":
        log.info("head-ablations generates with hf: ablation hooks the Hugging Face model's attention, which vLLM does not run")
    problems = eval_problems(problems_path)
    if not problems.height:
        raise ValueError(f"{problems_path} holds no eval problems of task {task!r}")
    model, tokenizer = load_checkpoint(model_dir)
    prompter = Prompter.of(tokenizer, config)
    source = config["tasks"][task]["source"]
    means = {}
    if settings.ablation == "mean":  # each head's mean output over the prompts the model is evaluated on
        means = head_means(model, tokenizer, [prompter.prompt(q, think=settings.think) for q in problems["question"]])
    n_layers, n_heads = model.config.num_hidden_layers, model.config.num_attention_heads
    conditions = [("none", None)] + [
        (head.name, HeadIntervention("ablate", (head,), ablation=settings.ablation, means=means))
        for head in (HeadId(layer, h) for layer in range(n_layers) for h in range(n_heads))
    ]
    parts, started = [], time.monotonic()
    for i, (name, change) in enumerate(conditions):
        samples = sample_table(
            model, tokenizer, problems, settings, change, seed=config["seed"], source=source, prompter=prompter
        )
        log.info(
            "%s (%d/%d, %.0f s): accuracy %.3f",
            name,
            i,
            len(conditions) - 1,
            time.monotonic() - started,
            samples["correct"].mean(),
        )
        parts.append(
            samples.with_columns(
                pl.lit(0, pl.Int64).alias("step"),
                pl.lit("ablate").alias("kind"),
                pl.lit(name).alias("heads_from"),
                pl.lit(None, pl.Int64).alias("seed"),
                pl.lit(None, pl.Float64).alias("alpha"),
            )
        )
    provenance = {
        "experiment": config["experiment"],
        "run": role or Path(model_dir).name,
        "step": 0,
        "task": task,
        "model_hash": model_hash(resolve(model_dir)[0]),  # as prepare hashes it: the weights, or a hub model's id
        "config_hash": config_hash({k: config[k] for k in ("evaluate", "seed", "prompt")}),
    }
    return write_table(with_provenance(pl.concat(parts), **provenance), "intervention_samples", out)
