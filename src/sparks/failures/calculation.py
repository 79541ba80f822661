"""The calculation_heads table: which attention heads of the starting model keep its arithmetic
right, read off the failure anatomy under exact single-head ablation.

The starting model's samples, unablated and with each head ablated alone on the same seed, come
from the evaluate stage (:mod:`sparks.evaluate.ablations`). Every sample is classified by :mod:`sparks.failures.classify` with the ``failures`` settings, as
the failures stage does, and per head and difficulty (and over all difficulties, ``"all"``) the
table gives the calculation-error share (``calculation_error`` samples over all samples), its
rise over the unablated model, and the accuracy with its change.

Selection rule: heads are ranked by the rise of the overall calculation-error share (rank 1 =
largest; ties go to the lower layer, then the lower head); the ``top_k`` first are ``selected``,
except that a head whose ablation does not raise the share (rise <= 0) is never selected, so
fewer than ``top_k`` heads are selected when fewer raise it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import polars as pl

from sparks.registry import FAILURE_CATEGORIES

log = logging.getLogger(__name__)

CALCULATION = "calculation_error"
"""The failure category whose share the table follows (a name in ``sparks.registry.FAILURE_CATEGORIES``)."""
if CALCULATION not in FAILURE_CATEGORIES:  # pragma: no cover: a renamed category must be renamed here too
    raise RuntimeError(f"failure category {CALCULATION!r} is not in sparks.registry.FAILURE_CATEGORIES")

ALL = "all"
"""The ``difficulty`` of a head's row over every difficulty (the row its rank and selection come from)."""

SHARE_COLUMNS = {"difficulty": pl.String, "calc_share": pl.Float64, "accuracy": pl.Float64, "n_samples": pl.Int64}


def calculation_shares(failures: pl.DataFrame) -> pl.DataFrame:
    """Per difficulty (in the order the samples come) and over all of them (``difficulty`` =
    ``"all"``, last): the share of samples classified ``calculation_error`` (of all samples, right
    ones included), the accuracy (share correct) and the number of samples. ``failures`` has a
    ``difficulty``, ``category`` and ``correct`` column per sample (a failures table does)."""
    difficulties = failures["difficulty"].unique(maintain_order=True).to_list()
    if ALL in difficulties and len(difficulties) > 1:
        raise ValueError(
            f"the task has a difficulty named {ALL!r} beside others ({', '.join(map(str, difficulties))}): "
            "it would collide with the over-all row of the calculation_heads table; rename it"
        )
    aggregates = (
        (pl.col("category") == CALCULATION).mean().alias("calc_share"),
        pl.col("correct").cast(pl.Float64).mean().alias("accuracy"),
        pl.len().cast(pl.Int64).alias("n_samples"),
    )
    per_difficulty = failures.group_by("difficulty", maintain_order=True).agg(*aggregates)
    if difficulties == [ALL]:  # the only difficulty is the over-all row already
        return per_difficulty.select(list(SHARE_COLUMNS)).cast(SHARE_COLUMNS)
    overall = failures.select(pl.lit(ALL).alias("difficulty"), *aggregates)
    return pl.concat([per_difficulty.cast(SHARE_COLUMNS), overall.cast(SHARE_COLUMNS)]).select(list(SHARE_COLUMNS))


def head_rows(base: pl.DataFrame, ablated: pl.DataFrame) -> pl.DataFrame:
    """Each ablated head's shares (``ablated``: layer, head and the columns of
    :func:`calculation_shares`) next to the unablated model's (``base``, from
    :func:`calculation_shares`): ``calc_share_base``, ``calc_rise`` = calc_share - calc_share_base,
    ``accuracy_base`` and ``accuracy_change`` = accuracy - accuracy_base, per difficulty."""
    reference = base.select(
        "difficulty",
        pl.col("calc_share").alias("calc_share_base"),
        pl.col("accuracy").alias("accuracy_base"),
        pl.col("n_samples").alias("n_base"),
    )
    joined = ablated.join(reference, on="difficulty", how="left", maintain_order="left")
    unpaired = joined.filter(pl.col("n_base").is_null() | (pl.col("n_base") != pl.col("n_samples")))
    if unpaired.height:
        row = unpaired.row(0, named=True)
        raise ValueError(
            f"head a{row['layer']}.h{row['head']} has {row['n_samples']} samples of difficulty {row['difficulty']!r}, "
            f"the unablated model {row['n_base']}: the comparison must be paired (the same problems and samples)"
        )
    return joined.drop("n_base").with_columns(
        (pl.col("calc_share") - pl.col("calc_share_base")).alias("calc_rise"),
        (pl.col("accuracy") - pl.col("accuracy_base")).alias("accuracy_change"),
    )


def rank_heads(table: pl.DataFrame, top_k: int) -> pl.DataFrame:
    """Add ``rank`` and ``selected`` to every row of ``table`` (head_rows' columns), from each
    head's over-all row (``difficulty`` = ``"all"``): rank 1 = the largest ``calc_rise``, ties to
    the lower layer, then the lower head; ``selected`` = rank <= ``top_k`` and calc_rise > 0 (a
    head whose ablation does not raise the calculation-error share is never selected, so fewer
    than ``top_k`` heads may be)."""
    if top_k < 0:
        raise ValueError(f"top_k must be at least 0 (got {top_k})")
    overall = table.filter(pl.col("difficulty") == ALL)
    if overall.select("layer", "head").is_duplicated().any():
        raise ValueError("a head has more than one over-all row")
    ranked = (
        overall.sort(["calc_rise", "layer", "head"], descending=[True, False, False], nulls_last=True)
        .with_row_index("rank", offset=1)
        .select(
            "layer",
            "head",
            pl.col("rank").cast(pl.Int64),
            ((pl.col("rank") <= top_k) & (pl.col("calc_rise") > 0)).fill_null(False).alias("selected"),
        )
    )
    return table.drop("rank", "selected", strict=False).join(ranked, on=["layer", "head"], how="left", maintain_order="left")


def calculation_heads_table(
    base_failures: pl.DataFrame, head_failures: dict[tuple[int, int], pl.DataFrame], top_k: int
) -> pl.DataFrame:
    """The calculation_heads table (without provenance) from the classified samples of the
    unablated model and of each ablated head (``(layer, head)`` -> its samples with ``difficulty``,
    ``category`` and ``correct``): one row per head and difficulty plus each head's ``"all"`` row,
    heads in (layer, head) order, difficulties in the samples' order, ``"all"`` last."""
    base = calculation_shares(base_failures)
    parts = [
        calculation_shares(failures).select(
            pl.lit(layer, pl.Int64).alias("layer"), pl.lit(head, pl.Int64).alias("head"), pl.all()
        )
        for (layer, head), failures in sorted(head_failures.items())
    ]
    if not parts:
        raise ValueError("no ablated heads: the model has no attention heads to rank")
    table = rank_heads(head_rows(base, pl.concat(parts)), top_k)
    return table.select(
        "layer",
        "head",
        "difficulty",
        "n_samples",
        "calc_share",
        "calc_share_base",
        "calc_rise",
        "accuracy",
        "accuracy_base",
        "accuracy_change",
        "rank",
        "selected",
    )


def classified(
    samples: pl.DataFrame, problems: pl.DataFrame, config: dict[str, Any], task: str, max_new_tokens: int
) -> pl.DataFrame:
    """Every sample of a sample table classified as the failures stage classifies it (its
    classifier, the ``failures`` settings, the task's source and checker)."""
    from sparks.failures.changes import SAMPLE_KEYS, failure_table
    from sparks.failures.classify import FailureSettings

    source = config["tasks"][task]["source"]
    keyed = samples.with_columns(pl.lit(None, pl.String).alias(k) for k in SAMPLE_KEYS)
    return failure_table(keyed, problems, max_new_tokens, source == "synthetic", FailureSettings.from_config(config), source)


def calculation_heads_stage(
    config: dict[str, Any], samples_path: Path, problems_path: Path, task: str, out: Path, top_k: int
) -> Path:
    """Write the calculation_heads table of a starting model on ``task`` to ``out`` from its
    head-ablation samples (``samples_path``, :mod:`sparks.evaluate.ablations`: heads_from none for
    the unablated model, a head's name for that head ablated alone), each classified as the
    failures stage classifies it. Heads are ranked by the rise of the overall calculation-error
    share; the ``top_k`` first are selected, but never a head whose ablation does not raise it
    (rise <= 0). Provenance: the samples' run (the model's role) and model hash, step null."""
    from sparks.config import config_hash
    from sparks.tables import read_table, with_provenance, write_table
    from sparks.types import parse_heads

    if top_k < 0:
        raise ValueError(f"--top-k must be at least 0 (got {top_k})")
    samples = read_table(samples_path, "intervention_samples")
    problems = read_table(problems_path, "problems")
    if "none" not in samples["heads_from"].unique().to_list():
        raise ValueError(f"{samples_path} holds no unablated samples (heads_from none): not a head-ablations table")
    max_new_tokens = config["evaluate"]["max_new_tokens"]
    failures = {
        name: classified(part.drop("heads_from"), problems, config, task, max_new_tokens)
        for (name,), part in samples.group_by("heads_from", maintain_order=True)
    }
    base = failures.pop("none")
    per_head = {tuple(parse_heads([name], str(samples_path))[0]): part for name, part in failures.items()}
    table = calculation_heads_table(base, per_head, top_k)
    chosen = table.filter((pl.col("difficulty") == ALL) & pl.col("selected")).sort("rank")
    log.info(
        "unablated calculation-error share %.3f; selected %d of %d heads (top %d with a positive rise): %s",
        calculation_shares(base).filter(pl.col("difficulty") == ALL)["calc_share"][0], chosen.height, len(per_head), top_k,
        " ".join(f"a{a}.h{b}" for a, b in chosen.select("layer", "head").rows()) or "none",
    )  # fmt: skip
    provenance = {
        "experiment": config["experiment"],
        "run": samples["run"][0],
        "step": None,
        "task": task,
        "model_hash": samples["model_hash"][0],
        "config_hash": config_hash({"samples": samples["config_hash"][0], "failures": config["failures"], "top_k": top_k}),
    }
    return write_table(with_provenance(table, **provenance), "calculation_heads", out)
