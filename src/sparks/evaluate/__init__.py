"""Benchmark stage: sampled accuracy per checkpoint (``sparks evaluate``) and head interventions
(``sparks intervene``): mean/zero ablation of a run's emergent heads in its final checkpoint and
scaling of those heads in the base model, each against random heads from the same layers."""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from sparks.config import ConfigError, add_config_argument, check_task, config_hash, load_config, run_provenance

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluateSettings:
    """The ``evaluate`` section of the config."""

    n_samples: int = 4
    temperature: float = 1.0
    max_new_tokens: int = 48
    batch_size: int = 128
    k: tuple[int, ...] = (1, 2, 4)
    alphas: tuple[float, ...] = (0.5, 2.0)
    ablation: str = "mean"
    random_seeds: int = 2

    def __post_init__(self) -> None:
        if self.n_samples < 1 or any(k < 1 or k > self.n_samples for k in self.k):
            raise ConfigError(
                f"evaluate.k = {list(self.k)} needs 1 <= k <= evaluate.n_samples ({self.n_samples}); raise n_samples or lower k"
            )
        if self.ablation not in ("mean", "zero"):
            raise ConfigError(f"evaluate.ablation = {self.ablation!r} is not one of mean, zero")

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> EvaluateSettings:
        s = dict(config["evaluate"])
        s["k"], s["alphas"] = tuple(s["k"]), tuple(s["alphas"])
        return cls(**s)


def sample_table(
    model,
    tokenizer,
    problems: pl.DataFrame,
    settings: EvaluateSettings,
    intervention=None,
    seed: int = 0,
    source: str = "synthetic",
) -> pl.DataFrame:
    """One row per (problem, sample): sample_id (the problem), k (sample index), correct, n_tokens,
    answer (extracted; null when none), completion."""
    from sparks.data.answers import answer_checker, extract_answer
    from sparks.evaluate.interventions import intervene
    from sparks.generate import generate

    check = answer_checker(source)
    # the plain question: the model decides whether to think (as in GRPO's prompts)
    repeated = [q for q in problems["question"] for _ in range(settings.n_samples)]
    with intervene(model, intervention):
        completions = generate(
            model, tokenizer, repeated, settings.max_new_tokens, settings.batch_size, settings.temperature, seed, progress=True
        )
    n_tokens = [len(ids) for ids in tokenizer(completions, add_special_tokens=False)["input_ids"]]
    answers = [a for a in problems["answer"] for _ in range(settings.n_samples)]
    return pl.DataFrame(
        {
            "difficulty": [d for d in problems["difficulty"] for _ in range(settings.n_samples)],
            "sample_id": [i for i in problems["problem_id"] for _ in range(settings.n_samples)],
            "k": list(range(settings.n_samples)) * problems.height,
            "correct": [check(c, a) for c, a in zip(completions, answers)],
            "n_tokens": n_tokens,
            "answer": [extract_answer(c) for c in completions],
            "completion": completions,
        },
        schema_overrides={"answer": pl.String},
    )


def pass_table(samples: pl.DataFrame, ks: tuple[int, ...]) -> pl.DataFrame:
    """Per difficulty and k: accuracy (mean over samples), pass@k and success@k (means over problems)."""
    from sparks.evaluate.passk import pass_at_k, success_at_k

    per_problem = samples.group_by("difficulty", "sample_id").agg(pl.len().alias("n"), pl.col("correct").sum().alias("c"))
    rows = []
    for (difficulty,), group in per_problem.group_by("difficulty"):
        accuracy = samples.filter(pl.col("difficulty") == difficulty)["correct"].mean()
        for k in ks:
            rows.append(
                {
                    "difficulty": difficulty,
                    "k_samples": k,
                    "accuracy": accuracy,
                    "pass_at_k": sum(pass_at_k(n, c, k) for n, c in group.select("n", "c").rows()) / group.height,
                    "success_at_k": sum(success_at_k(n, c, k) for n, c in group.select("n", "c").rows()) / group.height,
                }
            )
    return pl.DataFrame(rows).sort("difficulty", "k_samples")


def eval_problems(data_dir: Path, task: str) -> pl.DataFrame:
    """The task's held-out problems: problem_id, difficulty, question, answer."""
    from sparks.tables import read_table

    problems = read_table(Path(data_dir) / f"{task}_problems.parquet", "problems")
    return problems.filter(pl.col("split") == "eval").select("problem_id", "difficulty", "question", "answer")


def evaluate_stage(config: dict[str, Any], manifest: Path, step: int, task: str, data_dir: Path, out: Path) -> Path:
    from sparks.model.load import load_checkpoint, model_hash
    from sparks.tables import with_provenance, write_table
    from sparks.train import checkpoint_path, read_manifest

    settings = EvaluateSettings.from_config(config)
    checkpoint = checkpoint_path(manifest, step)
    model, tokenizer = load_checkpoint(checkpoint)
    samples = sample_table(
        model,
        tokenizer,
        eval_problems(data_dir, task),
        settings,
        seed=config["seed"] + step,
        source=config["tasks"][task]["source"],
    )
    log.info("step %d accuracy by difficulty: %s", step, samples.group_by("difficulty").agg(pl.col("correct").mean()).rows())
    provenance = {
        "experiment": config["experiment"],
        "run": read_manifest(manifest)["run"],
        "step": step,
        "task": task,
        "model_hash": model_hash(checkpoint),
        "config_hash": config_hash(config["evaluate"]),
    }
    return write_table(with_provenance(samples, **provenance), "eval", out)


def intervention_table(
    config: dict[str, Any], manifest: Path, task: str, data_dir: Path, cohorts: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Ablation of the run's emergent heads in its final checkpoint and their scaling in its
    starting (base) model, each with no intervention and with random heads from the same layers.

    Returns the summary (interventions table) and every sample behind it (intervention_samples).
    """
    from sparks.evaluate.interventions import HeadIntervention, head_means, random_heads_like
    from sparks.model.load import load_checkpoint
    from sparks.train import checkpoint_path, read_manifest
    from sparks.types import HeadId

    settings = EvaluateSettings.from_config(config)
    steps = read_manifest(manifest)["steps"]
    problems = eval_problems(data_dir, task)
    emergent = tuple(HeadId(r["layer"], r["head"]) for r in cohorts.filter(pl.col("status") == "emergent").iter_rows(named=True))
    if not emergent:
        log.warning("run has no emergent heads: the interventions table lists only the unmodified models")
    rows, all_samples = [], []
    for kind, step, alphas in (("ablate", steps[-1], (None,)), ("scale", steps[0], settings.alphas)):
        model, tokenizer = load_checkpoint(checkpoint_path(manifest, step))
        n_heads = model.config.num_attention_heads
        means = head_means(model, tokenizer, list(problems["question"])) if kind == "ablate" else {}
        variants = [("none", None, ())]
        if emergent:
            variants.append(("emergent", None, emergent))
            variants += [
                ("random", s, random_heads_like(emergent, n_heads, s, exclude=emergent)) for s in range(settings.random_seeds)
            ]
        for alpha in alphas:
            for heads_from, seed, heads in variants:
                if heads_from == "none" and alpha not in (None, alphas[0]):
                    continue  # one unmodified run per model
                change = HeadIntervention(kind, heads, alpha or 1.0, settings.ablation, means) if heads else None
                samples = sample_table(
                    model, tokenizer, problems, settings, change, seed=config["seed"], source=config["tasks"][task]["source"]
                )
                alpha_value = None if kind == "ablate" or heads_from == "none" else alpha
                all_samples.append(
                    samples.with_columns(
                        pl.lit(step, pl.Int64).alias("step"),
                        pl.lit(kind).alias("kind"),
                        pl.lit(heads_from).alias("heads_from"),
                        pl.lit(seed, pl.Int64).alias("seed"),
                        pl.lit(alpha_value, pl.Float64).alias("alpha"),
                    )
                )
                for r in pass_table(samples, (max(settings.k),)).iter_rows(named=True):
                    rows.append(
                        {
                            "step": step,
                            "kind": kind,
                            "heads_from": heads_from,
                            "seed": seed,
                            "heads": " ".join(h.name for h in heads),
                            "alpha": alpha_value,
                            "difficulty": r["difficulty"],
                            "n_samples": samples.filter(pl.col("difficulty") == r["difficulty"]).height,
                            "accuracy": r["accuracy"],
                            "k_samples": r["k_samples"],
                            "pass_at_k": r["pass_at_k"],
                            "success_at_k": r["success_at_k"],
                        }
                    )
    return pl.DataFrame(rows, schema_overrides={"seed": pl.Int64, "alpha": pl.Float64}), pl.concat(all_samples)


def intervene_stage(
    config: dict[str, Any], manifest: Path, task: str, data_dir: Path, cohorts_path: Path, out: Path, samples_out: Path
) -> Path:
    from sparks.tables import read_table, with_provenance, write_table
    from sparks.train import read_manifest

    table, samples = intervention_table(config, manifest, task, data_dir, read_table(cohorts_path, "cohorts"))
    provenance = run_provenance(config, read_manifest(manifest)["run"], task, "evaluate", "aggregate")
    write_table(with_provenance(samples, **provenance), "intervention_samples", samples_out)
    return write_table(with_provenance(table, **provenance), "interventions", out)


def _common(p: argparse.ArgumentParser) -> None:
    add_config_argument(p)
    p.add_argument("--manifest", type=Path, required=True, help="the run's checkpoints.json")
    p.add_argument("--task", required=True, help="task name under tasks: in the config")
    p.add_argument("--data-dir", type=Path, required=True, help="folder with {task}_problems.parquet")
    p.add_argument("--out", type=Path, required=True, help="output table (Parquet)")


def make_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("evaluate", help="sampled accuracy of one checkpoint on the task's eval problems")
    _common(p)
    p.add_argument("--step", type=int, required=True, help="checkpoint step (one listed in the manifest)")
    p.set_defaults(func=main)
    q = subparsers.add_parser("intervene", help="ablate / scale a run's emergent heads against random heads")
    _common(q)
    q.add_argument("--cohorts", type=Path, required=True, help="the run's cohorts.parquet (aggregate stage)")
    q.add_argument("--samples", type=Path, required=True, help="output: every sample behind the table (Parquet)")
    q.set_defaults(func=intervene_main)
    from sparks.evaluate import failure_tables

    failure_tables.make_parser(subparsers)


def _config(args: argparse.Namespace) -> dict[str, Any]:
    config = load_config(args.config)
    check_task(config, args.task)
    return config


def main(args: argparse.Namespace) -> None:
    evaluate_stage(_config(args), args.manifest, args.step, args.task, args.data_dir, args.out)


def intervene_main(args: argparse.Namespace) -> None:
    intervene_stage(_config(args), args.manifest, args.task, args.data_dir, args.cohorts, args.out, args.samples)
