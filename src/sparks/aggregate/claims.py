"""The study's claims, each tested across a replicated run's replicates (or on a run without
replicates, a group of one): one row per claim with the statistic, its mean and 95 % interval
over replicates, and a verdict. With one replicate the interval is the value's sampling error
alone (``mean_interval``), and a claim measured by a count alone is not testable.

Intervals are 95 % Student t over replicates, their spread taken as at least each value's own
sampling error (binomial, from the samples behind an accuracy), so that a few replicates that
happen to agree exactly do not make an exact result.

Four verdicts, each claim stated so that a positive value supports it: ``reproduced`` (the
interval lies above zero), ``contradicted`` (it lies below zero: significantly the opposite),
``inconclusive`` (it holds zero: the report says the largest effect in the claim's direction the
interval still allows, its upper end), ``not testable here`` (the run has nothing to measure it
on: no reward, no intervened heads, no think-mode comparison, or a single value without an
interval). The rules are fixed here, before any data: a claim is never re-phrased to fit a result.

Multiplicity: a run's claims are one family. Each tested claim has a one-sided p-value read back
from its interval (``sparks.stats.interval_p``; for reward tracking the bootstrap interval read as
a normal one, an approximation), and Holm's adjustment over the family, in each direction at
2.5 % (the 95 % intervals' level): the verdict is *reproduced* when the adjusted p in the claim's
direction is at most 0.025, *contradicted* when the adjusted p the other way is, else
*inconclusive*; the table keeps the raw and the adjusted p. (The study's report would make every
run's claims one family; sparks adjusts per run, so adding a run changes no other run's verdicts.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import polars as pl

from sparks.aggregate.replicates import rms, robust_heads, same_base
from sparks.stats import holm, interval_p, mean_interval

REPRODUCED, CONTRADICTED, INCONCLUSIVE, UNTESTABLE = "reproduced", "contradicted", "inconclusive", "not testable here"
VERDICTS = (REPRODUCED, CONTRADICTED, INCONCLUSIVE, UNTESTABLE)
ALPHA = 0.025  # one-sided, per direction, after Holm over a run's claims: the 95 % intervals' level
SCHEMA = {
    "claim": pl.String,
    "statement": pl.String,
    "statistic": pl.String,
    "n_replicates": pl.Int64,
    "value": pl.Float64,
    "low": pl.Float64,
    "high": pl.Float64,
    "p_value": pl.Float64,
    "p_adjusted": pl.Float64,
    "verdict": pl.String,
    "detail": pl.String,
}


def _row(
    claim: str, statement: str, statistic: str, values: list, detail: str, extra_check: bool = True, floor_sd: float = 0.0
) -> dict:
    mean, low, high = mean_interval(values, floor_sd)
    n = len([v for v in values if v is not None])
    return {
        "claim": claim,
        "statement": statement,
        "statistic": statistic,
        "n_replicates": n,
        "value": mean,
        "low": low,
        "high": high,
        "p_value": interval_p(mean, low, high, n),
        "detail": detail,
        "capped": not extra_check,  # reproduced at most inconclusive (a count without a robust set)
    }


def adjust(rows: list[dict]) -> list[dict]:
    """The family's Holm-adjusted p-values and the verdicts they give (the module's docstring)."""
    up = holm([r["p_value"] for r in rows])
    down = holm([None if r["p_value"] is None else 1.0 - r["p_value"] for r in rows])
    out = []
    for row, p_up, p_down in zip(rows, up, down):
        row = {**row, "p_adjusted": p_up}
        if p_up is None:
            row["verdict"] = UNTESTABLE
        elif p_up <= ALPHA:
            row["verdict"] = INCONCLUSIVE if row.pop("capped", False) else REPRODUCED
        else:
            row["verdict"] = CONTRADICTED if p_down <= ALPHA else INCONCLUSIVE
        row.pop("capped", None)
        out.append(row)
    return out


def _untestable(claim: str, statement: str, statistic: str, why: str) -> dict:
    return {
        "claim": claim,
        "statement": statement,
        "statistic": statistic,
        "n_replicates": 0,
        "value": None,
        "low": None,
        "high": None,
        "p_value": None,
        "detail": why,
    }


def _overall(table: pl.DataFrame) -> float:
    """Accuracy over every difficulty (weighted by samples) of an interventions slice."""
    return float((table["accuracy"] * table["n_samples"]).sum() / table["n_samples"].sum())


def _se(table: pl.DataFrame) -> float:
    """The binomial standard error of ``_overall`` (samples taken as independent: a lower bound)."""
    p, n = _overall(table), int(table["n_samples"].sum())
    return math.sqrt(max(p * (1 - p), 0.0) / n) if n else 0.0


def _difference_se(*parts: pl.DataFrame) -> float:
    return math.sqrt(sum(_se(p) ** 2 for p in parts))


def _null_at_final(null_calls: pl.DataFrame) -> float:
    """Heads the pair-halves null calls at a replicate's final checkpoint, averaged over directions."""
    return float(null_calls.filter(pl.col("step") == null_calls["step"].max())["n_called"].mean())


def _first_k(table: pl.DataFrame) -> pl.DataFrame:
    return table.filter(pl.col("k_samples") == table["k_samples"].min())


def claims_table(
    method: str,
    heads: pl.DataFrame,
    reward: pl.DataFrame,
    accuracy: pl.DataFrame,
    interventions: Mapping[str, pl.DataFrame],
    think_overlap: Mapping[str, pl.DataFrame] | None,
    difficulties: list[str],
    intervened: str = "emergent",
    null_calls: Mapping[str, pl.DataFrame] | None = None,
) -> pl.DataFrame:
    """The claims of one replicated run (``method`` as in the config) from its replicate tables,
    each replicate's interventions table and, with a think-mode comparison, its think_overlap
    table. ``difficulties`` are the task's, easiest first; ``intervened`` is evaluate.heads;
    ``null_calls``: each replicate's pair-halves null, which "heads that stay" is measured against."""
    rows = []
    counts = heads.filter(pl.col("emergent")).group_by("replicate").len()
    replicates = heads["replicate"].unique().sort().to_list()
    per_replicate = [counts.filter(pl.col("replicate") == r)["len"].sum() for r in replicates]
    statistic = "emergent heads (called, in the final circuit) per replicate"
    null = [_null_at_final(null_calls[r]) for r in replicates] if null_calls else [0.0] * len(replicates)
    if null_calls:  # minus the heads the null calls at the final checkpoint, where nothing was learned
        statistic += " minus the pair-halves null's calls at the final checkpoint (mean of both directions)"
    # a count's own error (Poisson, the count's and the null's) is the least spread between replicates, so
    # that replicates counting alike do not make an exact result; one run stays untested (no interval)
    count_sd = math.sqrt(sum(per_replicate + null) / len(replicates)) if len(replicates) > 1 else 0.0
    per_replicate = [n - z for n, z in zip(per_replicate, null)]
    robust = heads.filter(pl.col("robust")).select("layer", "head", "emergent_in", "n_replicates").unique().sort("layer", "head")
    single = heads["replicate"].n_unique() == 1  # a run without replicates: its emergent heads are its set
    if single:
        robust_text = "emergent heads: " + (", ".join(f"a{layer}.h{h}" for layer, h, _, _ in robust.rows()) or "none")
    else:
        robust_text = ", ".join(f"a{layer}.h{h} ({k}/{n})" for layer, h, k, n in robust.rows()) or "none"
        robust_text = f"robust set (emergent in at least the configured share of replicates): {robust_text}"
    if not same_base(heads):
        robust_text = "base replicates: head identities are not compared across bases"
    rows.append(
        _row(
            "stable_heads",
            "post-training adds heads to the circuit that stay (the study: SFT and distillation accumulate stable heads)",
            statistic,
            per_replicate,
            robust_text,
            extra_check=bool(robust_heads(heads)) or not same_base(heads),
            floor_sd=count_sd,
        )
    )
    statement = "the number of emergent heads in the circuit tracks the reward's fluctuations (the study: GRPO)"
    if reward["n_points"][0] == 0 or reward["pooled_r"][0] is None:
        rows.append(
            _untestable(
                "reward_tracking",
                statement,
                "Pearson r of changes, pooled",
                f"no reward in the {method} train logs, fewer changes than aggregate.min_reward_points "
                f"({reward['n_points'][0]}), or no spread (no emergent head comes or goes)",
            )
        )
    else:
        r, low, high = reward.row(0, named=True)["pooled_r"], reward["pooled_low"][0], reward["pooled_high"][0]
        per = ", ".join("-" if v is None else f"{v:.2f}" for v in reward["replicate_r"][0])
        rows.append(
            {
                "claim": "reward_tracking",
                "statement": statement,
                "statistic": "Pearson r of checkpoint-to-checkpoint changes in emergent heads active and in reward (first "
                "differences: trends removed), pooled over replicates (block-bootstrap interval over checkpoints)",
                "n_replicates": int(reward["n_replicates"][0]),
                "value": r,
                "low": low,
                "high": high,
                "p_value": interval_p(r, low, high, 1),  # the bootstrap interval read as a normal one
                "detail": f"{reward['n_points'][0]} changes; per replicate r: {per}",
            }
        )
    final = accuracy.filter(pl.col("step") == accuracy["step"].max())
    for difficulty in difficulties:
        part = final.filter(pl.col("difficulty") == difficulty)
        claim, statement = (
            f"gain_{difficulty}",
            f"post-training raises {difficulty} accuracy (final checkpoint minus the shared base)",
        )
        if part.is_empty():
            rows.append(_untestable(claim, statement, "accuracy change", f"no {difficulty} problems evaluated"))
            continue
        row = part.row(0, named=True)
        rows.append(
            {
                "claim": claim,
                "statement": statement,
                "statistic": "accuracy change",
                "n_replicates": row["n_replicates"],
                "value": row["change_mean"],
                "low": row["change_low"],
                "high": row["change_high"],
                "p_value": interval_p(row["change_mean"], row["change_low"], row["change_high"], row["n_replicates"]),
                "detail": f"base {row['accuracy_mean'] - row['change_mean']:.3f}, final {row['accuracy_mean']:.3f}"
                + ("" if single else f" (replicates {row['accuracy_min']:.3f}-{row['accuracy_max']:.3f})"),
            }
        )
    rows += _ablation_claims(interventions, intervened if single else f"robust {intervened}", intervened)
    rows.append(_overthinking_claim(interventions, intervened, difficulties[0]))
    rows.append(_think_claim(think_overlap))
    return pl.DataFrame(adjust(rows), schema=SCHEMA)


def _ablation_claims(interventions: Mapping[str, pl.DataFrame], which: str, intervened: str) -> list[dict]:
    """``which``: the intervened heads as the statements name them (the robust set of replicates)."""
    ablate = {name: _first_k(t.filter(pl.col("kind") == "ablate")) for name, t in interventions.items()}
    # a replicate with nothing to ablate (base replicates intervene on their own heads) adds no value
    ablate = {name: t for name, t in ablate.items() if (t["heads_from"] == intervened).any()}
    statement = f"ablating the {which} heads in the final checkpoint costs accuracy"
    if not ablate:
        return [_untestable("ablation_cost", statement, "accuracy drop", f"no {which} heads to ablate")]
    drops = {
        name: _overall(t.filter(pl.col("heads_from") == "none")) - _overall(t.filter(pl.col("heads_from") == intervened))
        for name, t in ablate.items()
    }
    drop_se = rms(
        [
            _difference_se(t.filter(pl.col("heads_from") == "none"), t.filter(pl.col("heads_from") == intervened))
            for t in ablate.values()
        ]
    )
    rows = [_row("ablation_cost", statement, "accuracy drop (all difficulties)", list(drops.values()), "", floor_sd=drop_se)]
    controls = sorted({c for t in ablate.values() for c in t["heads_from"].unique().to_list()} - {"none", intervened})
    for control in controls:
        margins, errors = [], []
        for name, t in ablate.items():
            drawn = t.filter(pl.col("heads_from") == control)
            if drawn.is_empty():
                continue
            control_drop = (
                _overall(t.filter(pl.col("heads_from") == "none"))
                - sum(_overall(g) for _, g in drawn.group_by("seed")) / drawn["seed"].n_unique()
            )
            margins.append(drops[name] - control_drop)
            errors.append(_difference_se(t.filter(pl.col("heads_from") == intervened), drawn))
        rows.append(
            _row(
                f"ablation_vs_{control}",
                f"ablating the {which} heads costs more accuracy than ablating as many {control} heads",
                f"accuracy drop minus the {control} control's (mean of its draws)",
                margins,
                "",
                floor_sd=rms(errors),
            )
        )
    return rows


def _overthinking_claim(interventions: Mapping[str, pl.DataFrame], intervened: str, easiest: str) -> dict:
    claim, statement = (
        "overthinking_easy",
        f"scaling the {intervened} heads up in the starting model lowers {easiest} accuracy (the study: over-thinking)",
    )
    losses, errors = [], []
    for t in interventions.values():
        scale = _first_k(t.filter((pl.col("kind") == "scale") & (pl.col("difficulty") == easiest)))
        up = scale.filter((pl.col("heads_from") == intervened) & (pl.col("alpha") > 1))
        if up.is_empty():
            continue
        top, unmodified = up.filter(pl.col("alpha") == up["alpha"].max()), scale.filter(pl.col("heads_from") == "none")
        losses.append(_overall(unmodified) - _overall(top))
        errors.append(_difference_se(unmodified, top))
    if not losses:
        return _untestable(claim, statement, f"{easiest} accuracy loss", f"no {intervened} heads scaled by an alpha above 1")
    return _row(claim, statement, f"{easiest} accuracy, unmodified minus the largest alpha", losses, "", floor_sd=rms(errors))


def _think_claim(think_overlap: Mapping[str, pl.DataFrame] | None) -> dict:
    claim, statement = "think_off_broader", "with thinking off the circuit uses a broader set of heads"
    if not think_overlap:
        return _untestable(
            claim,
            statement,
            "think-off-only minus think-on-only heads",
            "no think-mode comparison (attribute.compare_think_at: none)",
        )
    margins = []
    for table in think_overlap.values():
        last = table.filter(pl.col("step") == table["step"].max()).row(0, named=True)
        margins.append(last["think_off_only"] - last["think_on_only"])
    return _row(claim, statement, "think-off-only minus think-on-only heads at the last compared checkpoint", margins, "")


def claims_stage(
    config: dict,
    group: str,
    task: str,
    replicate_files: Mapping[str, str],
    interventions: list,
    think_overlap: list | None,
    out: str,
    null_calls: list | None = None,
) -> None:
    """Write the replicate_claims table of the replicated run ``group`` from its replicates tables
    (``replicate_files``: replicate_heads, replicate_reward, replicate_accuracy), its replicates'
    interventions tables and, with a think-mode comparison, their think_overlap tables."""
    from sparks.aggregate.replicates import by_replicate
    from sparks.config import run_provenance, task_difficulties
    from sparks.tables import read_table, with_provenance, write_table

    replicates = config["claim_groups"][group]
    table = claims_table(
        config["runs"][replicates[0]]["method"],
        read_table(replicate_files["replicate_heads"], "replicate_heads"),
        read_table(replicate_files["replicate_reward"], "replicate_reward"),
        read_table(replicate_files["replicate_accuracy"], "replicate_accuracy"),
        by_replicate(interventions, "interventions", replicates),
        by_replicate(think_overlap, "think_overlap", replicates) if think_overlap else None,
        task_difficulties(config["tasks"][task]),
        config["evaluate"]["heads"],
        by_replicate(null_calls, "null_calls", replicates) if null_calls else None,
    )
    provenance = run_provenance(config, group, task, "runs", "attribute", "aggregate", "evaluate")
    write_table(with_provenance(table, **provenance), "replicate_claims", out)
