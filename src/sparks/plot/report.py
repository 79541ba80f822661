"""A self-contained HTML report of one experiment: every run's figures (embedded PNG) and key tables."""

from __future__ import annotations

import base64
import html
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl

import sparks
from sparks.aggregate.emergence import emergence_by_checkpoint, pearson_with_interval
from sparks.atomic import atomic_file
from sparks.plot import THINK_FIGURE, figure_names, figure_stems
from sparks.tables import read_table

_STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f2f2f2}img{max-width:100%;border:1px solid #eee}h2{border-bottom:2px solid #0072b2}"""


def _table(df: pl.DataFrame, digits: int = 3) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in df.columns)
    rows = []
    for row in df.iter_rows():
        cells = "".join(f"<td>{html.escape(f'{v:.{digits}f}' if isinstance(v, float) else str(v))}</td>" for v in row)
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<p><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}"></p>'


def run_section(results: Path, run: str, task: str, figures: tuple[str, ...]) -> str:
    circuits = results / "circuits" / run / task
    circuit = read_table(circuits / "circuit.parquet", "circuit")
    cohorts = read_table(circuits / "cohorts.parquet", "cohorts")
    similarity = read_table(circuits / "similarity.parquet", "similarity")
    faithfulness = read_table(str(results / "faithfulness" / run / "*" / f"{task}.parquet"), "faithfulness")
    per_step = (
        circuit.group_by("step")
        .agg(pl.col("in_circuit").sum().alias("active heads"))
        .join(similarity.select("step", "jaccard_edges", "jaccard_heads"), on="step", how="left")
        .join(faithfulness.group_by("step").agg(pl.col("cpr").first(), pl.col("cmd").first()), on="step", how="left")
        .sort("step")
    )
    status = cohorts.group_by("status").agg(pl.len().alias("heads")).sort("status")
    emergent = (
        cohorts.filter(pl.col("status") == "emergent")
        .group_by("cohort_step")
        .agg(pl.len().alias("heads"), pl.format("a{}.h{}", "layer", "head").str.join(" ").alias("which"))
        .sort("cohort_step")
    )
    parts = [f"<h2>run {html.escape(run)} (task {html.escape(task)})</h2>"]
    stems = figure_stems(results / "figures" / run, task)
    parts += [_image(stems[name].with_suffix(".png")) for name in figures]
    parts += ["<h3>Heads by status</h3>", _table(status), "<h3>Emergence cohorts</h3>", _table(emergent)]
    if THINK_FIGURE in figures:
        parts += think_section(circuits)
    parts += ["<h3>Per checkpoint</h3>", _table(per_step)]
    parts += benchmark_section(results, run, task, sorted(circuit["step"].unique().to_list()))
    parts += failure_section(results, run, task)
    train_log = read_table(results / "runs" / run / "train_log.parquet", "train_log")
    if train_log["reward"].null_count() < train_log.height:
        emergence = emergence_by_checkpoint(circuit, cohorts, train_log)
        r, low, high = pearson_with_interval(emergence["emergent_active"].to_list(), emergence["reward"].to_list())
        verdict = (
            "undefined (no spread in one of the two series)"
            if r is None
            else f"Pearson r = {r:.2f}" + (f", 95 % interval [{low:.2f}, {high:.2f}]" if low is not None else "")
        )
        parts += [
            "<h3>Newly activated heads vs reward</h3>",
            f"<p>Emergent heads active at each checkpoint against the mean reward since the previous one, "
            f"over {emergence.height} checkpoints: {verdict}.</p>",
            _table(emergence),
        ]
    return "\n".join(parts)


def think_section(circuits: Path) -> list[str]:
    from sparks.aggregate.think_modes import overlap_summary

    table = read_table(circuits / "think_modes.parquet", "think_modes")
    unique = (
        table.filter(pl.col("mode").is_in(["think_on_only", "think_off_only"]))
        .group_by("step", "mode")
        .agg(pl.col("node").str.join(" ").alias("heads"))
        .sort("step", "mode")
    )
    return [
        "<h3>Think on vs think off (same problems)</h3>",
        "<p>Heads active in the top-N circuit on think-on prompts (answer after the trace), on "
        "think-off prompts (answer at once), or both; Jaccard of the two active sets.</p>",
        _table(overlap_summary(table)),
        _table(unique),
    ]


def _highlighted(completion: str, bad_step: str | None) -> str:
    """The escaped completion with its first wrong step marked."""
    text = html.escape(completion)
    if bad_step:
        text = text.replace(html.escape(bad_step), f"<mark>{html.escape(bad_step)}</mark>", 1)
    return f"<code>{text}</code>"


def failure_section(results: Path, run: str, task: str, per_category: int = 3) -> list[str]:
    """Failure shares, the trade-off numbers with intervals, and real example traces per category."""
    from sparks.evaluate.failure_tables import category_shares
    from sparks.evaluate.failures import CATEGORIES

    failures = read_table(results / "bench" / run / "failures.parquet", "failures")
    changes = read_table(results / "bench" / run / "failure_changes.parquet", "failure_changes")
    evals = failures.filter(pl.col("origin") == "eval")
    steps = sorted(evals["step"].unique())
    ends = evals.filter(pl.col("step").is_in([steps[0], steps[-1]]))
    abandoned = pl.col("answer_abandoned").mean().alias("abandoned")
    shares = category_shares(ends, ["step", "difficulty"], abandoned).sort("step", "difficulty")
    changes = changes.filter(pl.col("category") != "correct").select(
        "comparison", "alpha", "difficulty", "category", "share_before", "share_after", "delta", "ci_low", "ci_high", "n_problems"
    )
    samples = read_table([results / "bench" / run / "eval" / str(s) / f"{task}.parquet" for s in steps], "eval").select(
        "step", "sample_id", "k", "completion"
    )
    examples = ["<h3>Example traces (first wrong step marked)</h3>"]
    for category in CATEGORIES[1:]:
        picked = evals.filter(pl.col("category") == category).sort("step", "sample_id", "k").head(per_category)
        if picked.is_empty():
            continue
        picked = picked.join(samples, on=["step", "sample_id", "k"])
        examples.append(f"<h4>{category.replace('_', ' ')}</h4><ul>")
        for r in picked.iter_rows(named=True):
            examples.append(
                f"<li>step {r['step']}, {html.escape(r['difficulty'])}: {_highlighted(r['completion'], r['bad_step'])}</li>"
            )
        examples.append("</ul>")
    return [
        "<h3>Failure anatomy (base and final checkpoint)</h3>",
        "<p>Share of samples per category, computed from the text of each completion; abandoned: a wrong "
        "sample whose trace had already reached the right answer.</p>",
        _table(shares),
        "<h3>The trade-off in numbers</h3>",
        "<p>Change in each failure category's share, final minus base checkpoint, and scaled emergent heads "
        "minus scaled random heads (same alpha), with 95 % bootstrap intervals over problems.</p>",
        _table(changes),
        *examples,
    ]


def benchmark_section(results: Path, run: str, task: str, steps: list[int]) -> list[str]:
    """Accuracy by difficulty (base vs final) and the interventions against their random controls."""
    samples = read_table([results / "bench" / run / "eval" / str(s) / f"{task}.parquet" for s in (steps[0], steps[-1])], "eval")
    per_problem = samples.group_by("step", "difficulty", "sample_id").agg(pl.col("correct").mean())
    accuracy = (
        per_problem.group_by("step", "difficulty")
        .agg(
            pl.col("correct").mean().alias("accuracy"),
            (pl.col("correct").std() / pl.len().sqrt()).alias("se over problems"),
            pl.len().alias("problems"),
        )
        .sort("difficulty", "step")
    )
    interventions = read_table(results / "bench" / run / "interventions" / f"{task}.parquet", "interventions")
    summary = (
        interventions.group_by("kind", "alpha", "heads_from", "difficulty")
        .agg(
            pl.col("accuracy").mean().alias("accuracy"),
            pl.col("accuracy").std().alias("sd over seeds"),
            pl.len().alias("runs"),
            pl.col("heads").first(),
        )
        .sort("kind", "difficulty", "alpha", "heads_from", nulls_last=False)
    )
    return [
        "<h3>Accuracy, base vs final checkpoint</h3>",
        _table(accuracy),
        "<h3>Interventions on the emergent heads vs random heads of the same layers</h3>",
        _table(summary),
    ]


def write_report(config: dict[str, Any], results: Path, out: Path) -> Path:
    results, out = Path(results), Path(out)
    figures = figure_names(config)
    sections = [run_section(results, run, settings["task"], figures) for run, settings in config["runs"].items()]
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>sparks: {html.escape(config["experiment"])}</title>
<style>{_STYLE}</style></head><body>
<h1>sparks report: experiment {html.escape(config["experiment"])}</h1>
<p>sparks {sparks.__version__}, made {created}. Circuits: top {config["aggregate"]["top_n"]} edges by |EAP-IG score|
(m = {config["attribute"]["ig_steps"]}, metric {config["attribute"]["metric"]}); a head is emergent once it is active, absent
from the base circuit, and in at least {config["aggregate"]["stability_threshold"]:.0%} of
{config["aggregate"]["bootstrap"]} bootstrap circuits.</p>
{"".join(sections)}
</body></html>"""
    with atomic_file(out) as tmp:
        tmp.write_text(page)
    return out
