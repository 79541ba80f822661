"""The report's answer first: per run (a replicated run's replicates together) what emerged, when,
whether it stayed, what it did to accuracy and whether ablating it mattered against each control,
and the study's claims as reproduced / not reproduced / not testable here; then each run's setup.

Every number is read from a table: the emergent heads from ``replicate_heads`` and the
checkpoint tables (``stability``, ``circuit``), the rest from ``replicate_claims`` (written by the
claims rule for every run; a run without replicates has intervals from its sampling error alone).
"""

from __future__ import annotations

import html
from typing import Any

import polars as pl

from sparks.plot.style import DASH, head_name, html_table

VERDICTS = {  # replicate_claims' verdicts (sparks.aggregate.claims), each with its colour class
    "reproduced": "verdict-holds",
    "contradicted": "verdict-fails",
    "inconclusive": "verdict-inconclusive",
    "not testable here": "verdict-untestable",
}
CLAIM_ORDER = (
    "stable_heads",
    "reward_tracking",
    "loss_",
    "gain_",
    "ablation_cost",
    "ablation_vs_",
    "overthinking_",
    "think_off_broader",
)


def _claim_rank(claim: str, order: list[str]) -> tuple[int, int, str]:
    """Claims in the study's order; accuracy gains by difficulty, easiest first."""
    rank = next(i for i, prefix in enumerate(CLAIM_ORDER) if claim.startswith(prefix))
    difficulty = claim.removeprefix("gain_").removeprefix("loss_")
    return rank, order.index(difficulty) if difficulty in order else len(order), claim


def number(value: float | None, low: float | None, high: float | None, signed: bool = True) -> str:
    """``+0.543 [0.446, 0.641]``, or the value alone without an interval, or a dash."""
    if value is None:
        return DASH
    if float(value).is_integer() and low is None:  # a count: the number of heads, or a difference of counts
        return str(int(value))
    text = f"{value:+.3f}" if signed else f"{value:.3f}"
    return text + (f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else "")


def verdict_html(verdict: str, high: float | None = None) -> str:
    """The verdict, coloured; an inconclusive one says the largest effect its interval still allows."""
    allows = f" (allows up to {high:+.3f})" if verdict == "inconclusive" and high is not None else ""
    return f'<span class="{VERDICTS[verdict]}">{verdict}{allows}</span>'


def emergent_heads(group_heads: pl.DataFrame, stability: pl.DataFrame, circuit: pl.DataFrame) -> list[str]:
    """One line per emergent head of a run (robust heads of a replicated run): its cohort step,
    bootstrap probability and membership at the final checkpoint, and checkpoints active."""
    replicates = group_heads["replicate"].unique().sort().to_list()
    lines = []
    if len(replicates) > 1:
        if group_heads["robust"].null_count() == group_heads.height:  # base replicates: no head is the same head
            return []
        robust = group_heads.filter(pl.col("robust")).sort("layer", "head", "seed")
        for (layer, head), rows in robust.group_by("layer", "head", maintain_order=True):
            steps = ", ".join(DASH if s is None else str(s) for s in rows["cohort_step"].to_list())
            lines.append(
                f"{head_name(layer, head)}: emergent in {rows['emergent_in'][0]} of {rows['n_replicates'][0]} "
                f"replicates (cohort steps {steps})"
            )
        return lines
    run = replicates[0]
    final = circuit.filter((pl.col("run") == run) & (pl.col("step") == circuit.filter(pl.col("run") == run)["step"].max()))
    p_final = stability.filter((pl.col("run") == run) & (pl.col("step") == final["step"].max()))
    n_steps = circuit.filter(pl.col("run") == run)["step"].n_unique()
    for row in group_heads.filter(pl.col("emergent")).sort("cohort_step", "layer", "head").iter_rows(named=True):
        key = (pl.col("layer") == row["layer"]) & (pl.col("head") == row["head"])
        p = p_final.filter(key)["p_in_circuit"]
        status = final.filter(key)["status"]
        active = circuit.filter((pl.col("run") == run) & key & pl.col("in_circuit")).height
        stays = "still in the final circuit" if status.len() and status[0] == "emergent" else "gone from the final circuit"
        lines.append(
            f"{head_name(row['layer'], row['head'])}: cohort step {row['cohort_step']}, {stays}, bootstrap probability "
            f"{p[0]:.2f} at the final checkpoint, active at {active} of {n_steps} checkpoints"
            if p.len()
            else f"{head_name(row['layer'], row['head'])}: cohort step {row['cohort_step']}"
        )
    return lines


def group_summary(group: str, runs: list[str], method: str, tables: dict[str, pl.DataFrame], order: list[str]) -> str:
    """The summary paragraph of one run (or replicated run); ``order``: the task's difficulties."""
    heads = tables["replicate_heads"].filter(pl.col("run") == group)
    claims = tables["replicate_claims"].filter(pl.col("run") == group)
    lines = emergent_heads(heads, tables["stability"], tables["circuit"])
    label = f"{len(runs)} replicates" if len(runs) > 1 else "one run, no replicates: intervals are sampling error only"
    kind = "robust emergent heads" if len(runs) > 1 else "emergent heads"
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines) or "<li>none</li>"
    intro = f"{len(lines)} {kind if len(lines) != 1 else kind.removesuffix('s')}"
    if len(runs) > 1 and heads["robust"].null_count() == heads.height:
        intro, items = (
            "Emergent heads",
            "<li>base replicates: head identities are not compared across bases (counts in the claims)</li>",
        )
    gains = claims.filter(pl.col("claim").str.starts_with("gain_"))
    gains = gains.sort(pl.col("claim").map_elements(lambda c: _claim_rank(c, order)[1], return_dtype=pl.Int64))
    gain_text = "; ".join(
        f"{c.removeprefix('gain_')} {html.escape(d.split(' (')[0])} ({number(v, lo, hi)})"
        for c, v, lo, hi, d in gains.select("claim", "value", "low", "high", "detail").rows()
        if v is not None
    )
    ablations = claims.filter(pl.col("claim").str.starts_with("ablation"))
    ablation_text = "; ".join(
        f"{'cost' if c == 'ablation_cost' else 'beyond the ' + c.removeprefix('ablation_vs_') + ' control'} "
        f"{number(v, lo, hi)}: {verdict_html(verdict, hi)}"
        for c, v, lo, hi, verdict in ablations.select("claim", "value", "low", "high", "verdict").rows()
    )
    return (
        f'<h3 id="summary-{html.escape(group)}">{html.escape(group)} ({html.escape(method)}, {label})</h3>'
        f"<p>{intro}:</p><ul>{items}</ul>"
        f"<p>Accuracy, base &rarr; final checkpoint (change, 95 % interval): {gain_text or DASH}.</p>"
        f"<p>Ablating the {kind} in the final checkpoint, accuracy drop over all difficulties: {ablation_text or DASH}.</p>"
    )


def claims_matrix(groups: list[str], claims: pl.DataFrame, order: list[str]) -> str:
    """One row per claim, one column per run: verdict, value and interval; ``order``: the task's
    difficulties, easiest first."""
    claims = claims.filter(pl.col("run").is_in(groups))
    names = sorted(claims["claim"].unique().to_list(), key=lambda c: _claim_rank(c, order))
    head = "".join(f"<th>{html.escape(g)}</th>" for g in groups)
    rows = []
    for claim in names:
        part = claims.filter(pl.col("claim") == claim)
        statement = part["statement"][0]
        cells = []
        for group in groups:
            row = part.filter(pl.col("run") == group)
            if row.is_empty():
                cells.append(f'<td class="txt">{DASH}</td>')
                continue
            r = row.row(0, named=True)
            why = f"<br><span class='note'>{html.escape(r['detail'])}</span>" if r["detail"] else ""
            tested = (
                f"<br><span class='note'>p = {r['p_value']:.3g}, Holm-adjusted {r['p_adjusted']:.3g}</span>"
                if r.get("p_adjusted") is not None
                else ""
            )
            cells.append(
                f'<td class="txt">{verdict_html(r["verdict"], r["high"])}<br>{number(r["value"], r["low"], r["high"])}'
                f"{tested}<br><span class='note'>{html.escape(r['statistic'])}</span>{why}</td>"
            )
        rows.append(f'<tr><td class="txt">{html.escape(statement)}</td>{"".join(cells)}</tr>')
    return f"<table><thead><tr><th>the study's claim</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def setup_table(config: dict[str, Any], groups: dict[str, list[str]], accuracy: pl.DataFrame) -> str:
    """A row per run: method, steps, learning rate, data sizes, base and teacher accuracy."""
    from sparks.config import base_role

    def model_accuracy(role: str, task: str) -> str:
        part = accuracy.filter(pl.col("role") == role) if "role" in accuracy.columns else accuracy.clear()
        if part.is_empty():
            return DASH
        part = part.filter(pl.col("think") == part["think"].max()) if part["think"].n_unique() > 1 else part
        return ", ".join(f"{d} {a:.2f}" for d, a in part.select("difficulty", "accuracy").rows())

    rows = []
    for group, runs in groups.items():
        run = config["runs"][runs[0]]
        task = config["tasks"][run["task"]]
        teacher = run["distill"]["teacher"] if run["method"] == "distill" else None
        rows.append(
            {
                "run": group,
                "method": run["method"],
                "replicates": len(runs),
                "steps": run.get("max_steps"),
                "checkpoint every": run.get("save_steps"),
                "learning rate": run.get("learning_rate"),
                "batch size": run.get("batch_size"),
                "train problems": task.get("n_train"),
                "eval problems": task.get("n_eval"),
                "pairs (attribution)": task.get("n_pairs"),
                "base accuracy (greedy, by chain length)": model_accuracy(base_role(config, runs[0]), run["task"]),
                "teacher accuracy (greedy, by chain length)": model_accuracy("teacher", run["task"])
                if teacher == "teacher"
                else DASH,
            }
        )
    return html_table(
        pl.DataFrame(rows),
        digits=4,
        note=f"{DASH}: not applicable (no teacher, or a model whose accuracy the prepare stage did not measure). "
        "Base and teacher accuracy: greedy, think on, on fresh problems of each chain length (1_ops: one operation), measured by the prepare stage.",
    )
