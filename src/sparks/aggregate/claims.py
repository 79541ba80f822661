"""The study's claims, each tested across a replicated run's replicates (or on a run without
replicates, a group of one): one row per claim with the statistic, its mean and 95 % interval
over replicates, and a verdict. With one replicate the interval is the value's sampling error
alone (over problems), and a claim measured by a count alone is not testable.

Accuracy claims are paired on problems, replicates and problems crossed (``sparks.aggregate.paired``
states the method): the final checkpoint against the shared base, the intervened model against
the unmodified one and against each control (the mean of its draws, their spread carried).
Count claims (heads that stay, think-off breadth) are 95 % Student t over replicates, their spread
taken as at least the counts' own (Poisson) error, so that a few replicates that happen to agree
exactly do not make an exact result; the circuits behind them come from the paired bootstrap over
pairs of ``sparks.aggregate.bootstrap``.

Four verdicts, each claim stated so that a positive value supports it: ``reproduced`` (the
interval lies above zero), ``contradicted`` (it lies below zero: significantly the opposite),
``inconclusive`` (it holds zero: the report says the largest effect in the claim's direction the
interval still allows, its upper end), ``not testable here`` (the run has nothing to measure it
on: no reward, no intervened heads, no think-mode comparison, or a single value without an
interval). The rules are fixed here, before any data: a claim is never re-phrased to fit a result.

Multiplicity: a run's claims are one family. Each tested claim has a one-sided p-value from the
same t as its interval (for counts read back with ``sparks.stats.interval_p``; for reward tracking
the bootstrap interval read as a normal one, an approximation), and Holm's adjustment over the family, in each direction at
2.5 % (the 95 % intervals' level): the verdict is *reproduced* when the adjusted p in the claim's
direction is at most 0.025, *contradicted* when the adjusted p the other way is, else
*inconclusive*; the table keeps the raw and the adjusted p. (The study's report would make every
run's claims one family; sparks adjusts per run, so adding a run changes no other run's verdicts.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import polars as pl

from sparks.aggregate.paired import Estimate, crossed, difference, per_problem
from sparks.aggregate.replicates import robust_heads, same_base
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


def _count_sd(counts: list, replicates: int) -> float:
    """The least spread between replicates of a count claim: the counts' own (Poisson) error, a
    replicate's variance being its expected count, the total taken as at least one (replicates
    that all count zero have not measured a zero spread); 0 for one replicate (no interval)."""
    return math.sqrt(max(sum(counts), 1.0) / replicates) if replicates > 1 else 0.0


def _null_at_final(null_calls: pl.DataFrame) -> float:
    """Heads the pair-halves null calls at a replicate's final checkpoint, averaged over directions."""
    return float(null_calls.filter(pl.col("step") == null_calls["step"].max())["n_called"].mean())


def claims_table(
    method: str,
    heads: pl.DataFrame,
    reward: pl.DataFrame,
    samples: Mapping[str, pl.DataFrame],
    think_overlap: Mapping[str, pl.DataFrame] | None,
    difficulties: list[str],
    intervened: str = "emergent",
    null_calls: Mapping[str, pl.DataFrame] | None = None,
) -> pl.DataFrame:
    """The claims of one replicated run (``method`` as in the config) from its replicate tables,
    each replicate's failures table (``samples``: every eval and intervention sample, with its
    correctness and failure category) and, with a think-mode comparison, its think_overlap
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
    count_sd = _count_sd(per_replicate + null, len(replicates))
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
    rows += _tier_claims(samples, difficulties, single)
    rows += _ablation_claims(samples, intervened if single else f"robust {intervened}", intervened)
    rows += _overthinking_claims(samples, intervened, difficulties[0])
    rows.append(_think_claim(think_overlap, null_calls))
    return pl.DataFrame(adjust(rows), schema=SCHEMA)


def _estimated(claim: str, statement: str, statistic: str, estimate: Estimate, detail: str) -> dict:
    """A claim row from a paired estimate over problems (sparks.aggregate.paired)."""
    low, high = estimate.interval()
    return {
        "claim": claim,
        "statement": statement,
        "statistic": statistic,
        "n_replicates": estimate.n_replicates,
        "value": estimate.value,
        "low": low,
        "high": high,
        "p_value": estimate.p,
        "detail": detail,
    }


def _eval(table: pl.DataFrame) -> pl.DataFrame:
    return table.filter(pl.col("origin") == "eval")


def _tier_claims(samples: Mapping[str, pl.DataFrame], difficulties: list[str], single: bool) -> list[dict]:
    """Per difficulty, the final checkpoint against the shared base, paired on problems: a gain
    on every tier but the easiest, where the study expects a loss (over-thinking)."""
    rows = []
    for difficulty in difficulties:
        easiest = difficulty == difficulties[0] and len(difficulties) > 1
        claim, verb = (f"loss_{difficulty}", "lowers") if easiest else (f"gain_{difficulty}", "raises")
        statement = f"post-training {verb} {difficulty} accuracy (final checkpoint against the shared base)"
        if easiest:
            statement += "; the study: easy problems lose to over-thinking"
        ends = {}
        for name, table in samples.items():
            tier = _eval(table).filter(pl.col("difficulty") == difficulty)
            if not tier.is_empty():
                ends[name] = (
                    per_problem(tier.filter(pl.col("step") == tier["step"].min())),
                    per_problem(tier.filter(pl.col("step") == tier["step"].max())),
                )
        if not ends:
            rows.append(_untestable(claim, statement, "accuracy change", f"no {difficulty} problems evaluated"))
            continue
        changes = [difference(base, final) if easiest else difference(final, base) for base, final in ends.values()]
        finals = [final["value"].mean() for _, final in ends.values()]
        detail = f"base {next(iter(ends.values()))[0]['value'].mean():.3f}, final {sum(finals) / len(finals):.3f}"
        detail += "" if single else f" (replicates {min(finals):.3f}-{max(finals):.3f})"
        statistic = "accuracy, base minus final" if easiest else "accuracy change"
        rows.append(_estimated(claim, statement, statistic + " (paired on problems)", crossed(changes), detail))
    return rows


def _conditions(samples: Mapping[str, pl.DataFrame], kind: str, intervened: str) -> dict[str, pl.DataFrame]:
    """Each replicate's intervention samples of ``kind``, for the replicates that intervened on
    heads (a base replicate may have none of its own)."""
    out = {}
    for name, table in samples.items():
        part = table.filter((pl.col("origin") == "intervention") & (pl.col("kind") == kind))
        if (part["heads_from"] == intervened).any():
            out[name] = part
    return out


def _versus_controls(
    parts: Mapping[str, pl.DataFrame], intervened: str, claim: str, statement: str, statistic: str
) -> list[dict]:
    """Per control: its accuracy (mean over its draws) minus the intervened heads', paired on
    problems, the draws' spread carried (sparks.aggregate.paired)."""
    controls = sorted({c for t in parts.values() for c in t["heads_from"].unique().to_list()} - {"none", intervened})
    rows = []
    for control in controls:
        margins, draws = [], []
        for table in parts.values():
            drawn = table.filter(pl.col("heads_from") == control)
            if drawn.is_empty():
                continue
            margins.append(difference(per_problem(drawn), per_problem(table.filter(pl.col("heads_from") == intervened))))
            draws.append([float(g["correct"].mean()) for _, g in drawn.group_by("seed")])
        n_draws = sorted({len(d) for d in draws})
        rows.append(
            _estimated(
                claim.format(control=control),
                statement.format(control=control),
                statistic.format(control=control),
                crossed(margins, draws),
                f"{'/'.join(map(str, n_draws))} distinct draws of {control} heads per replicate",
            )
        )
    return rows


def _ablation_claims(samples: Mapping[str, pl.DataFrame], which: str, intervened: str) -> list[dict]:
    """``which``: the intervened heads as the statements name them (the robust set of replicates)."""
    ablate = _conditions(samples, "ablate", intervened)
    statement = f"ablating the {which} heads in the final checkpoint costs accuracy"
    if not ablate:
        return [_untestable("ablation_cost", statement, "accuracy drop", f"no {which} heads to ablate")]
    drops = [
        difference(
            per_problem(t.filter(pl.col("heads_from") == "none")), per_problem(t.filter(pl.col("heads_from") == intervened))
        )
        for t in ablate.values()
    ]
    rows = [_estimated("ablation_cost", statement, "accuracy drop, all difficulties (paired on problems)", crossed(drops), "")]
    return rows + _versus_controls(
        ablate,
        intervened,
        "ablation_vs_{control}",
        f"ablating the {which} heads costs more accuracy than ablating as many {{control}} heads",
        "accuracy with the {control} control's heads ablated (mean of its draws) minus with the intervened ones",
    )


def _overthinking_claims(samples: Mapping[str, pl.DataFrame], intervened: str, easiest: str) -> list[dict]:
    """The study's over-thinking: the intervened heads scaled up (the largest alpha above 1) in the
    starting model lower accuracy on the easiest problems, more than as many control heads scaled
    alike, and raise the calculation-error share there; each paired on problems."""
    statement = f"scaling the {intervened} heads up in the starting model lowers {easiest} accuracy (the study: over-thinking)"
    scaled = {}
    for name, table in _conditions(samples, "scale", intervened).items():
        easy = table.filter(pl.col("difficulty") == easiest)
        up = easy.filter((pl.col("heads_from") == intervened) & (pl.col("alpha") > 1))
        if not up.is_empty():
            top = up["alpha"].max()
            scaled[name] = easy.filter((pl.col("heads_from") == "none") | (pl.col("alpha") == top))
    if not scaled:
        why = f"no {intervened} heads scaled by an alpha above 1"
        return [
            _untestable("overthinking_easy", statement, f"{easiest} accuracy loss", why),
            _untestable("overthinking_calculation", f"scaling the {intervened} heads up raises calculation errors", "", why),
        ]
    alpha = sorted({float(t.filter(pl.col("heads_from") == intervened)["alpha"].max()) for t in scaled.values()})
    detail = f"alpha {'/'.join(f'{a:g}' for a in alpha)}"
    unmodified = {n: t.filter(pl.col("heads_from") == "none") for n, t in scaled.items()}
    up = {n: t.filter(pl.col("heads_from") == intervened) for n, t in scaled.items()}
    losses = [difference(per_problem(unmodified[n]), per_problem(up[n])) for n in scaled]
    errors = [
        difference(per_problem(_calculation(up[n]), "calculation"), per_problem(_calculation(unmodified[n]), "calculation"))
        for n in scaled
    ]
    return [
        _estimated(
            "overthinking_easy",
            statement,
            f"{easiest} accuracy, unmodified minus scaled up (paired on problems)",
            crossed(losses),
            detail,
        ),
        *_versus_controls(
            scaled,
            intervened,
            "overthinking_vs_{control}",
            f"scaling the {intervened} heads up lowers {easiest} accuracy more than scaling as many {{control}} heads alike",
            f"{easiest} accuracy with the {{control}} control's heads scaled up (mean of its draws) minus with the intervened ones",
        ),
        _estimated(
            "overthinking_calculation",
            f"scaling the {intervened} heads up in the starting model raises the calculation-error share of {easiest} samples",
            f"{easiest} calculation-error share, scaled up minus unmodified (paired on problems)",
            crossed(errors),
            detail,
        ),
    ]


def _calculation(table: pl.DataFrame) -> pl.DataFrame:
    return table.with_columns((pl.col("category") == "calculation_error").alias("calculation"))


def _think_claim(think_overlap: Mapping[str, pl.DataFrame] | None, null_calls: Mapping[str, pl.DataFrame] | None) -> dict:
    """Think-off-only minus think-on-only heads at each replicate's last compared checkpoint, less
    what splitting one mode's pairs in halves makes of that margin at the same checkpoint
    (|only in B - only in A| of the pair-halves null): a broader set beyond pair noise."""
    claim, statement = "think_off_broader", "with thinking off the circuit uses a broader set of heads"
    statistic = "think-off-only minus think-on-only heads at the last compared checkpoint"
    if not think_overlap:
        return _untestable(claim, statement, statistic, "no think-mode comparison (attribute.compare_think_at: none)")
    margins, nulls, counts = [], [], []
    for replicate, table in sorted(think_overlap.items()):
        last = table.filter(pl.col("step") == table["step"].max()).row(0, named=True)
        margins.append(last["think_off_only"] - last["think_on_only"])
        counts.append(last["think_off_only"] + last["think_on_only"])
        if null_calls:
            at = null_calls[replicate].filter(pl.col("step") == last["step"])
            only = dict(at.select("direction", "n_only").rows())
            nulls.append(abs(only["a_to_b"] - only["b_to_a"]) if len(only) == 2 else 0)
    detail = ", ".join(f"{m:+d}" for m in margins)
    if null_calls:
        statistic += ", minus the margin the pair-halves null makes there (|only in one half - only in the other|)"
        detail = f"margins {detail}; null {', '.join(map(str, nulls))}"
        margins = [m - z for m, z in zip(margins, nulls)]
    if len(margins) < 2:
        detail += "; one replicate: no interval"
    # a count's own (Poisson) error is the least spread between replicates, as for stable_heads
    count_sd = _count_sd(counts + nulls, len(counts))
    return _row(claim, statement, statistic, margins, detail, floor_sd=count_sd)


def claims_stage(
    config: dict,
    group: str,
    task: str,
    replicate_files: Mapping[str, str],
    failures: list,
    think_overlap: list | None,
    out: str,
    null_calls: list | None = None,
) -> None:
    """Write the replicate_claims table of the replicated run ``group`` from its replicates tables
    (``replicate_files``: replicate_heads, replicate_reward), its replicates' failures tables
    (every sample, eval and intervention) and null_calls tables and, with a think-mode
    comparison, their think_overlap tables."""
    from sparks.aggregate.replicates import by_replicate
    from sparks.config import run_provenance, task_difficulties
    from sparks.tables import read_table, with_provenance, write_table

    replicates = config["claim_groups"][group]
    table = claims_table(
        config["runs"][replicates[0]]["method"],
        read_table(replicate_files["replicate_heads"], "replicate_heads"),
        read_table(replicate_files["replicate_reward"], "replicate_reward"),
        by_replicate(failures, "failures", replicates),
        by_replicate(think_overlap, "think_overlap", replicates) if think_overlap else None,
        task_difficulties(config["tasks"][task]),
        config["evaluate"]["heads"],
        by_replicate(null_calls, "null_calls", replicates) if null_calls else None,
    )
    provenance = run_provenance(config, group, task, "runs", "attribute", "aggregate", "evaluate")
    write_table(with_provenance(table, **provenance), "replicate_claims", out)
