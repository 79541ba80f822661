"""The failures table of a run (every eval and intervention sample, classified) and the
trade-off numbers: how each category's share changes from base to final checkpoint, and under
scaling of the emergent heads against random heads, with bootstrap intervals over problems."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from sparks.config import add_config_argument
from sparks.evaluate.failures import CATEGORIES, FailureSettings, classify

log = logging.getLogger(__name__)
SAMPLE_KEYS = ("origin", "step", "kind", "heads_from", "seed", "alpha")  # one sampled condition


def failure_table(
    samples: pl.DataFrame, problems: pl.DataFrame, max_new_tokens: int, synthetic: bool, settings: FailureSettings
) -> pl.DataFrame:
    """Classify every sample. ``samples`` has the condition columns (SAMPLE_KEYS) and the eval
    columns; ``problems`` gives each problem's question and answer."""
    questions = problems.select(pl.col("problem_id").alias("sample_id"), "question", pl.col("answer").alias("expected"))
    joined = samples.join(questions, on="sample_id", how="left")
    missing = joined.filter(pl.col("question").is_null())
    if missing.height:
        raise ValueError(
            f"{missing.height} samples name problems missing from the problems table (e.g. {missing['sample_id'][0]})"
        )
    rows = [
        classify(
            r["question"], r["completion"], str(r["expected"]), r["correct"], r["n_tokens"], max_new_tokens, synthetic, settings
        )
        for r in joined.iter_rows(named=True)
    ]
    return joined.select(*SAMPLE_KEYS, "difficulty", "sample_id", "k", "correct").with_columns(
        pl.Series("category", [f.category for f in rows], pl.String),
        pl.Series("n_steps", [f.n_steps for f in rows], pl.Int64),
        joined["n_tokens"],
        pl.Series("first_bad_step", [f.first_bad_step for f in rows], pl.Int64),
        pl.Series("bad_step", [f.bad_step for f in rows], pl.String),
        pl.Series("answer_abandoned", [f.answer_abandoned for f in rows], pl.Boolean),
    )


def category_shares(failures: pl.DataFrame, by: list[str], *extra: pl.Expr) -> pl.DataFrame:
    """Share of each category (one column per category) in each group of ``by``, plus ``extra``."""
    return failures.group_by(by).agg(*[(pl.col("category") == c).mean().alias(c) for c in CATEGORIES], *extra)


def _shares(per_problem: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Category shares [n_categories] from per-problem counts [n_problems, n_categories]."""
    counts = (per_problem * weights[:, None]).sum(0)
    return counts / max(counts.sum(), 1)


def share_change(before: pl.DataFrame, after: pl.DataFrame, n_boot: int, seed: int) -> list[dict[str, Any]]:
    """Per category: share before and after, their difference and a 95 % percentile interval
    from resampling problems (the same draw of problems for both sides: a paired bootstrap)."""
    problems = sorted(set(before["sample_id"]) & set(after["sample_id"]))
    if not problems:
        return []

    def counts(df: pl.DataFrame) -> np.ndarray:
        table = np.zeros((len(problems), len(CATEGORIES)))
        index = {p: i for i, p in enumerate(problems)}
        for problem, category in df.filter(pl.col("sample_id").is_in(problems)).select("sample_id", "category").rows():
            table[index[problem], CATEGORIES.index(category)] += 1
        return table

    a, b = counts(before), counts(after)
    ones = np.ones(len(problems))
    rng = np.random.default_rng(seed)
    draws = np.stack([_shares(b, w) - _shares(a, w) for w in rng.multinomial(len(problems), ones / len(problems), n_boot)])
    low, high = np.percentile(draws, [2.5, 97.5], axis=0)
    share_a, share_b = _shares(a, ones), _shares(b, ones)
    return [
        {
            "category": c,
            "share_before": float(share_a[i]),
            "share_after": float(share_b[i]),
            "delta": float(share_b[i] - share_a[i]),
            "ci_low": float(low[i]),
            "ci_high": float(high[i]),
            "n_problems": len(problems),
        }
        for i, c in enumerate(CATEGORIES)
    ]


def change_table(failures: pl.DataFrame, steps: list[int], n_boot: int = 1000, seed: int = 0) -> pl.DataFrame:
    """Final vs base checkpoint (eval samples), and scaled emergent vs scaled random heads (same
    alpha, random draws pooled), per difficulty and category."""
    rows = []
    evals = failures.filter(pl.col("origin") == "eval")
    scaled = failures.filter((pl.col("kind") == "scale") & pl.col("alpha").is_not_null())
    for difficulty in sorted(failures["difficulty"].unique()):
        d_eval = evals.filter(pl.col("difficulty") == difficulty)
        base, final = d_eval.filter(pl.col("step") == steps[0]), d_eval.filter(pl.col("step") == steps[-1])
        pairs = [("final_vs_base", None, base, final)]
        for alpha in sorted(scaled["alpha"].unique()):
            part = scaled.filter((pl.col("difficulty") == difficulty) & (pl.col("alpha") == alpha))
            random = part.filter(pl.col("heads_from") == "random")
            pairs.append(("emergent_vs_random", alpha, random, part.filter(pl.col("heads_from") == "emergent")))
        for comparison, alpha, before, after in pairs:
            for row in share_change(before, after, n_boot, seed):
                rows.append({"comparison": comparison, "alpha": alpha, "difficulty": difficulty, **row})
    from sparks.tables import SCHEMAS

    return pl.DataFrame(rows, schema=SCHEMAS["failure_changes"])


def failures_stage(
    config: dict[str, Any], manifest: Path, task: str, data_dir: Path, bench_dir: Path, out: Path, changes_out: Path
) -> None:
    from sparks.config import run_provenance
    from sparks.evaluate import eval_problems
    from sparks.tables import read_table, with_provenance, write_table
    from sparks.train import read_manifest

    info = read_manifest(manifest)
    steps = info["steps"]
    bench_dir = Path(bench_dir)
    evals = read_table([bench_dir / "eval" / str(s) / f"{task}.parquet" for s in steps], "eval")
    evals = evals.with_columns(
        pl.lit("eval").alias("origin"), pl.lit(None, pl.String).alias("kind"), pl.lit(None, pl.String).alias("heads_from"),
        pl.lit(None, pl.Int64).alias("seed"), pl.lit(None, pl.Float64).alias("alpha"),
    )  # fmt: skip
    interventions = read_table(bench_dir / "interventions" / f"{task}_samples.parquet", "intervention_samples")
    interventions = interventions.with_columns(pl.lit("intervention").alias("origin"))
    columns = [*SAMPLE_KEYS, "difficulty", "sample_id", "k", "correct", "n_tokens", "completion"]
    samples = pl.concat([evals.select(columns), interventions.select(columns)])
    problems = eval_problems(data_dir, task)
    settings = FailureSettings(**config["failures"])
    synthetic = config["tasks"][task]["source"] == "synthetic"
    table = failure_table(samples, problems, config["evaluate"]["max_new_tokens"], synthetic, settings)
    changes = change_table(table, steps, seed=config["seed"])
    provenance = run_provenance(config, info["run"], task, "evaluate", "failures")
    shares = category_shares(table, ["origin", "difficulty"])
    log.info("category shares:\n%s", shares.sort("origin", "difficulty"))
    write_table(with_provenance(table, **provenance), "failures", out)
    write_table(with_provenance(changes, **provenance), "failure_changes", changes_out)


def make_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("failures", help="classify every sample of a run (correct, calculation_error, loop, ...)")
    add_config_argument(p)
    p.add_argument("--manifest", type=Path, required=True, help="the run's checkpoints.json")
    p.add_argument("--task", required=True, help="task name under tasks: in the config")
    p.add_argument("--data-dir", type=Path, required=True, help="folder with {task}_problems.parquet")
    p.add_argument("--bench-dir", type=Path, required=True, help="the run's bench folder (eval/, interventions/)")
    p.add_argument("--out", type=Path, required=True, help="output: failures table (Parquet)")
    p.add_argument("--changes", type=Path, required=True, help="output: failure_changes table (Parquet)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> None:
    from sparks.config import check_task, load_config

    config = load_config(args.config)
    check_task(config, args.task)
    failures_stage(config, args.manifest, args.task, args.data_dir, args.bench_dir, args.out, args.changes)
