"""The failures table of a run (every eval and intervention sample, classified), each sampled
condition's category shares, and the trade-off numbers: how each category's share changes from
base to final checkpoint, and under scaling of the emergent heads against control heads, with
bootstrap intervals over problems."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from sparks.failures.classify import FailureSettings, classify
from sparks.registry import CONTROLS
from sparks.registry import FAILURE_CATEGORIES as CATEGORIES

SAMPLE_KEYS = ("origin", "step", "kind", "heads_from", "seed", "alpha")  # one sampled condition
CONDITION = ("origin", "step", "kind", "heads_from", "alpha", "difficulty")  # a condition, a control's draws pooled


def failure_table(
    samples: pl.DataFrame,
    problems: pl.DataFrame,
    max_new_tokens: int,
    synthetic: bool,
    settings: FailureSettings,
    source: str | None = None,
) -> pl.DataFrame:
    """Classify every sample. ``samples`` has the condition columns (SAMPLE_KEYS) and the eval
    columns; ``problems`` gives each problem's question and answer; ``source``: the task's."""
    questions = problems.select(pl.col("problem_id").alias("sample_id"), "question", pl.col("answer").alias("expected"))
    joined = samples.join(questions, on="sample_id", how="left")
    missing = joined.filter(pl.col("question").is_null())
    if missing.height:
        raise ValueError(
            f"{missing.height} samples name problems missing from the problems table (e.g. {missing['sample_id'][0]})"
        )
    rows = [
        classify(
            r["question"],
            r["completion"],
            str(r["expected"]),
            r["correct"],
            r["n_tokens"],
            max_new_tokens,
            synthetic,
            settings,
            source,
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
    shares = [(pl.col("category") == c).mean().alias(c) for c in CATEGORIES]
    return failures.group_by(by, maintain_order=True).agg(*shares, *extra)


def share_table(failures: pl.DataFrame) -> pl.DataFrame:
    """Per condition (CONDITION: a control's draws pooled) the share of each category, of wrong
    samples that had reached the answer (abandoned), samples, correct ones and tokens spent."""
    n_correct = pl.col("correct").sum().cast(pl.Int64)
    tokens = pl.col("n_tokens").sum().cast(pl.Int64)
    return category_shares(
        failures,
        list(CONDITION),
        pl.col("answer_abandoned").mean().alias("abandoned"),
        pl.len().cast(pl.Int64).alias("n_samples"),
        n_correct.alias("n_correct"),
        tokens.alias("tokens"),
        pl.when(n_correct > 0).then(tokens / n_correct).otherwise(None).alias("tokens_per_correct"),
    )  # in the order the samples come: eval first, difficulties in the eval order


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
    """Final vs base checkpoint (eval samples), and scaled emergent heads vs each control's scaled
    heads (same alpha, a control's draws pooled), per difficulty and category."""
    rows = []
    evals = failures.filter(pl.col("origin") == "eval")
    scaled = failures.filter((pl.col("kind") == "scale") & pl.col("alpha").is_not_null())
    for difficulty in sorted(failures["difficulty"].unique()):
        d_eval = evals.filter(pl.col("difficulty") == difficulty)
        base, final = d_eval.filter(pl.col("step") == steps[0]), d_eval.filter(pl.col("step") == steps[-1])
        pairs = [("final_vs_base", None, base, final)]
        for alpha in sorted(scaled["alpha"].unique()):
            part = scaled.filter((pl.col("difficulty") == difficulty) & (pl.col("alpha") == alpha))
            intervened = part.filter(~pl.col("heads_from").is_in(["none", *CONTROLS]))  # evaluate.heads: emergent, ...
            name = intervened["heads_from"][0] if intervened.height else "emergent"
            for control in CONTROLS:
                heads = part.filter(pl.col("heads_from") == control)
                if heads.height:
                    pairs.append((f"{name}_vs_{control}", alpha, heads, intervened))
        for comparison, alpha, before, after in pairs:
            for row in share_change(before, after, n_boot, seed):
                rows.append({"comparison": comparison, "alpha": alpha, "difficulty": difficulty, **row})
    from sparks.tables import SCHEMAS

    return pl.DataFrame(rows, schema=SCHEMAS["failure_changes"])
