"""How far to trust each emergent head: the report's section right after the answer.

Per run, from the aggregate stage's tables: every head the emergence test called, with its exact
effect's change from the base at its cohort step (paired 95 % interval); how often the test calls
heads per checkpoint against how often its pair-halves null does (false emergences); how well
EAP-IG's head ranking agrees with the exact effects; on a planted run, each detector's precision
and recall; and one sentence that reads those numbers. A sham run (self-distillation,
``distill.teacher: base``) teaches nothing new: every head it calls is a false emergence, and
its call rate is shown beside every run's. Nothing is computed here but means and intervals
over replicates of what the tables hold.
"""

from __future__ import annotations

import html

import polars as pl

from sparks.plot.style import DASH, head_name, html_table
from sparks.registry import EMERGENCE_RULE
from sparks.stats import mean_interval


def _of(table: pl.DataFrame, run: str) -> pl.DataFrame:
    return table.filter(pl.col("run") == run)


def called_heads(cohorts: pl.DataFrame, stability: pl.DataFrame, run: str) -> pl.DataFrame:
    """One row per head the test called in ``run``: status, cohort step, p_change and the exact
    effect's change from the base at the cohort step with its interval."""
    at_cohort = _of(stability, run).select(
        pl.col("step").alias("cohort_step"), "layer", "head", "p_change", "effect_change", "change_low", "change_high"
    )
    called = _of(cohorts, run).filter(pl.col("status").is_in(["emergent", "transient"]))
    return (
        called.join(at_cohort, on=["cohort_step", "layer", "head"], how="left")
        .sort("cohort_step", "layer", "head")
        .select(
            pl.struct("layer", "head")
            .map_elements(lambda h: head_name(h["layer"], h["head"]), return_dtype=pl.String)
            .alias("head"),
            "status",
            "cohort_step",
            "p_change",
            "effect_change",
            "change_low",
            "change_high",
        )
    )


def _rates(stability: pl.DataFrame, null_calls: pl.DataFrame, run: str) -> tuple[float | None, float | None]:
    """(the test's calls per checkpoint after the base, the null's calls per checkpoint and direction)."""
    own = _of(stability, run)
    later = own.filter(pl.col("step") > own["step"].min())
    calls = later.group_by("step").agg(pl.col("called").sum())["called"]
    null = _of(null_calls, run)["n_called"]
    return (float(calls.mean()) if calls.len() else None), (float(null.mean()) if null.len() else None)


def _interval(values: list[float | None], share: bool = False, signed: bool = False) -> str:
    """``mean [low, high]`` over replicates (t interval), clipped to what the values can be: a
    share to [0, 1], a count to 0 and up (``signed``: a difference, not clipped)."""
    mean, low, high = mean_interval([v for v in values if v is not None])
    if mean is None:
        return DASH
    if low is None or len(values) < 2:
        return f"{mean:.2f}"
    if not signed:
        low, high = max(low, 0.0), min(high, 1.0) if share else high
    return f"{mean:.2f} [{low:.2f}, {high:.2f}]"


def _sentence(group: str, runs: list[str], named: list[str], own: list, null: list, agreement: pl.DataFrame) -> str:
    """One sentence per run (or replicated run) from its numbers: the test's calls per checkpoint
    against its null's, as a difference within each replicate with a t interval over replicates."""
    differences = [a - b for a, b in zip(own, null) if a is not None and b is not None]
    mean, low, high = mean_interval(differences)
    heads = ", ".join(named) if named else "no head"
    if mean is None:
        verdict = "heads, but its null could not be measured"
    elif mean <= 0:
        verdict = "heads no more often than its pair-halves null does by chance: treat these calls as noise"
    elif len(differences) == 1:
        verdict = "heads more often than its null; one run has no interval over replicates, so this is not yet a result"
    elif low > 0:
        verdict = f"heads more often than its null (difference {_interval(differences, signed=True)} over replicates)"
    else:
        verdict = f"heads more often than its null on average, but the difference {_interval(differences, signed=True)} allows none: inconclusive"
    agree = ""
    if agreement.height:
        agree = (
            f" EAP-IG's head ranking agrees with the exact effects at Spearman {agreement['spearman'].mean():.2f} and a "
            f"top-k overlap of {agreement['top_k_overlap'].mean():.2f} (means over checkpoints)."
        )
    per = "replicate" if len(runs) > 1 else "run"
    return (
        f"{group}: the test called {heads}; it calls {_interval(own)} heads per checkpoint and {per}, "
        f"the null {_interval(null)}, so it calls {verdict}.{agree}"
    )


def rule_changes(circuit_rules: pl.DataFrame, run: str) -> str:
    """One sentence: the heads called under each circuit-size rule and how many calls differ."""
    part = _of(circuit_rules, run)
    called = {
        rule: set(" ".join(rows["called"].to_list()).split()) for (rule,), rows in part.group_by("rule", maintain_order=True)
    }
    if len(called) < 2:
        return ""
    (first, a), (second, b) = sorted(called.items())
    sizes = {rule: part.filter(pl.col("rule") == rule)["n_edges"].to_list() for rule in called}
    return (
        f"Circuit size in {run}: the faithfulness-target circuits have {', '.join(map(str, sizes['faithfulness']))} edges "
        f"at the checkpoints (top-N: {sizes['top_n'][0]}); the test calls {' '.join(sorted(a)) or 'no head'} under {first} "
        f"and {' '.join(sorted(b)) or 'no head'} under {second}: {len(a ^ b)} call(s) change with the rule."
    )


def planted_rows(planted: pl.DataFrame, runs: list[str]) -> pl.DataFrame:
    """Per detector: precision and recall, mean and 95 % interval over the replicates."""
    part = planted.filter(pl.col("run").is_in(runs))
    rows = []
    for (detector,), rows_of in part.group_by("detector", maintain_order=True):
        rows.append(
            {
                "detector": detector,
                "replicates": rows_of.height,
                "planted heads": rows_of["planted"][0],
                "precision": _interval(rows_of["precision"].to_list(), share=True),
                "recall": _interval(rows_of["recall"].to_list(), share=True),
                "detected (each replicate)": "; ".join(d or "none" for d in rows_of["detected"].to_list()),
            }
        )
    return pl.DataFrame(rows)


def sham_groups(config: dict, groups: dict[str, list[str]]) -> list[str]:
    """The runs that teach nothing new: self-distillation on the starting model's own samples."""
    return [
        group
        for group, runs in groups.items()
        if config["runs"][runs[0]]["method"] == "distill" and config["runs"][runs[0]]["distill"]["teacher"] == "base"
    ]


def trust_section(groups: dict[str, list[str]], tables: dict[str, pl.DataFrame], shams: list[str] = ()) -> str:
    """The HTML of the section: the rule, the sham runs' false-emergence rate, then per run (each
    replicate) its called heads, its call and null rates, EAP-IG's agreement with exact effects,
    a planted run's precision and recall, and a sentence."""
    parts = [f"<p>{html.escape(EMERGENCE_RULE)}</p>"]
    for sham in shams:
        rates = [_rates(tables["stability"], tables["null_calls"], run)[0] for run in groups[sham]]
        parts.append(
            f"<p><b>Sham run {html.escape(sham)}</b> (self-distillation: trained on the starting model's own samples, "
            f"so nothing new is learned): the test calls {_interval(rates)} heads per checkpoint, every one a false "
            "emergence. Read each run's call rate below against it.</p>"
        )
    for group, runs in groups.items():
        rows, own, null, named = [], [], [], []
        agreement = tables["agreement"].filter(pl.col("run").is_in(runs))
        called = {run: called_heads(tables["cohorts"], tables["stability"], run) for run in runs}
        for run, heads in called.items():
            named += [f"{h} ({s})" + ("" if len(runs) == 1 else f" in {run}") for h, s in heads.select("head", "status").rows()]
            rate, null_rate = _rates(tables["stability"], tables["null_calls"], run)
            own.append(rate)
            null.append(null_rate)
            mine = _of(agreement, run)
            rows.append(
                {
                    "run": run,
                    "emergent": heads.filter(pl.col("status") == "emergent").height,
                    "transient": heads.filter(pl.col("status") == "transient").height,
                    "calls per checkpoint": rate,
                    "null calls per checkpoint": null_rate,
                    "Spearman EAP-IG vs exact": mine["spearman"].mean() if mine.height else None,
                    "top-k overlap": mine["top_k_overlap"].mean() if mine.height else None,
                }
            )
        parts.append(f"<h3>{html.escape(group)}</h3><p>{html.escape(_sentence(group, runs, named, own, null, agreement))}</p>")
        parts.append(
            html_table(
                pl.DataFrame(rows),
                note="calls per checkpoint: heads the test calls at each checkpoint after the base, averaged; null calls: "
                "heads it calls between two disjoint halves of one checkpoint's pairs (either way round), averaged over "
                f"checkpoints and directions. {DASH}: no exact effects (attribute.exact off).",
            )
        )
        if tables["planted"].filter(pl.col("run").is_in(runs)).height:
            parts.append(
                "<p>Planted heads (only these heads were trained; every other weight is the starting model's): "
                "each detector's precision and recall, mean [95 % interval] over replicates.</p>"
            )
            parts.append(html_table(planted_rows(tables["planted"], runs)))
        changes = [rule_changes(tables["circuit_rules"], run) for run in runs]
        if any(changes):
            parts.append("<p>" + "<br>".join(html.escape(text) for text in changes if text) + "</p>")
        if agreement.height:
            per_step = agreement.sort("run", "step").select("run", "step", "pearson", "spearman", "top_k", "top_k_overlap")
            parts.append(
                f"<details><summary>EAP-IG against exact effects at each checkpoint ({html.escape(group)})</summary>"
                + html_table(per_step, headers={"top_k": "k (circuit heads)", "top_k_overlap": "top-k overlap"})
                + "</details>"
            )
        for run, heads in called.items():
            if heads.height:
                parts.append(f"<p>Heads called in {html.escape(run)}, at their cohort step:</p>")
                parts.append(
                    html_table(
                        heads,
                        digits=4,
                        headers={
                            "effect_change": "exact effect change from the base",
                            "change_low": "95 % low",
                            "change_high": "95 % high",
                        },
                        note=f"{DASH}: no exact effects at this checkpoint (attribute.exact off).",
                    )
                )
    return "".join(parts)
