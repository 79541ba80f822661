"""A self-contained HTML report of one experiment: every run's figures (embedded PNG) and key tables.

The plot stage renders each run's section from the tables its rule names (:func:`write_section`);
``sparks report`` joins the sections under one header (:func:`write_report`)."""

from __future__ import annotations

import base64
import html
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

import sparks
from sparks.atomic import atomic_file
from sparks.registry import FAILURE_CATEGORIES

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


def run_section(tables: dict[str, pl.DataFrame], images: list[Path], run: str, task: str) -> str:
    """The HTML of one run: its figures (PNG files, embedded) and its key tables."""
    circuit, cohorts, faithfulness = tables["circuit"], tables["cohorts"], tables["faithfulness"]
    per_step = (
        circuit.group_by("step")
        .agg(pl.col("in_circuit").sum().alias("active heads"))
        .join(tables["similarity"].select("step", "jaccard_edges", "jaccard_heads"), on="step", how="left")
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
    parts += [_image(path) for path in images]
    importance = tables["importance"]
    effects = (
        importance.filter(pl.col("step") == importance["step"].min())
        .join(cohorts.select("layer", "head", "status"), on=["layer", "head"], how="left")
        .select(pl.format("a{}.h{}", "layer", "head").alias("head"), pl.col("status").fill_null("never active"), "mean_effect")
        .sort("mean_effect", descending=True)
    )
    parts += ["<h3>Heads by status</h3>", _table(status), "<h3>Emergence cohorts</h3>", _table(emergent)]
    parts += [
        "<h3>Head effect (the study's importance, App. A.6)</h3>",
        "<p>Importance: the summed |score| of a head's circuit edges out, normalised per checkpoint; effect "
        "(I - I<sub>first</sub>) / (I + I<sub>first</sub>), averaged over the later checkpoints. The five "
        "largest and five smallest:</p>",
        _table(pl.concat([effects.head(5), effects.tail(5)]).unique(maintain_order=True)),
    ]
    if "think_modes" in tables:
        parts += think_section(tables["think_modes"], tables["think_overlap"])
    parts += ["<h3>Per checkpoint</h3>", _table(per_step)]
    parts += benchmark_section(tables["passk"], tables["interventions"])
    parts += failure_section(tables["failures"], tables["failure_shares"], tables["failure_changes"], tables["eval"])
    emergence = tables["emergence"]
    if emergence["reward"].null_count() < emergence.height:
        first = emergence.row(0, named=True)
        r, low, high = first["pearson_r"], first["pearson_low"], first["pearson_high"]
        verdict = (
            "undefined (no spread in one of the two series)"
            if r is None
            else f"Pearson r = {r:.2f}" + (f", 95 % interval [{low:.2f}, {high:.2f}]" if low is not None else "")
        )
        parts += [
            "<h3>Newly activated heads vs reward</h3>",
            f"<p>Emergent heads active at each checkpoint against the mean reward since the previous one, "
            f"over {emergence.height} checkpoints: {verdict}.</p>",
            _table(emergence.select("step", "emergent_active", "new_heads", "reward")),
        ]
    parts += machine_section(tables.values())
    return "\n".join(parts)


def machine_section(tables) -> list[str]:
    """Where the tables were computed (their ``machine`` provenance): runs on different machines
    differ as replicates do, not as copies (floating-point order, threads, accelerator)."""
    machines = sorted({m for t in tables if "machine" in t.columns for m in t["machine"].drop_nulls().unique().to_list()})
    items = "".join(f"<li>{html.escape(m)}</li>" for m in machines)
    return [
        "<h3>Computed on</h3>",
        "<p>The same config and seed give identical tables on one machine; on another (CPU, torch, threads, "
        f"accelerator) they are a replicate, not a copy. This run's tables were made on:</p><ul>{items}</ul>",
    ]


def think_section(table: pl.DataFrame, overlap: pl.DataFrame) -> list[str]:
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
        _table(overlap.select("step", "both", "think_on_only", "think_off_only", "jaccard")),
        _table(unique),
    ]


def _highlighted(completion: str, bad_step: str | None) -> str:
    """The escaped completion with its first wrong step marked."""
    text = html.escape(completion)
    if bad_step:
        text = text.replace(html.escape(bad_step), f"<mark>{html.escape(bad_step)}</mark>", 1)
    return f"<code>{text}</code>"


def failure_section(
    failures: pl.DataFrame, shares: pl.DataFrame, changes: pl.DataFrame, samples: pl.DataFrame, per_category: int = 3
) -> list[str]:
    """Failure shares, the trade-off numbers with intervals, and real example traces per category."""
    evals = failures.filter(pl.col("origin") == "eval")
    steps = sorted(evals["step"].unique())
    ends = (
        shares.filter((pl.col("origin") == "eval") & pl.col("step").is_in([steps[0], steps[-1]]))
        .select("step", "difficulty", *FAILURE_CATEGORIES, "abandoned")
        .sort("step", "difficulty")
    )
    changes = changes.filter(pl.col("category") != "correct").select(
        "comparison", "alpha", "difficulty", "category", "share_before", "share_after", "delta", "ci_low", "ci_high", "n_problems"
    )
    samples = samples.select("step", "sample_id", "k", "completion")
    examples = ["<h3>Example traces (first wrong step marked)</h3>"]
    for category in FAILURE_CATEGORIES[1:]:
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
        _table(ends),
        "<h3>The trade-off in numbers</h3>",
        "<p>Change in each failure category's share, final minus base checkpoint, and scaled emergent heads "
        "minus each control's scaled heads (same alpha), with 95 % bootstrap intervals over problems.</p>",
        _table(changes),
        *examples,
    ]


def benchmark_section(passk: pl.DataFrame, interventions: pl.DataFrame) -> list[str]:
    """Accuracy by difficulty (base vs final) and the interventions against their controls."""
    steps = sorted(passk["step"].unique())
    accuracy = (
        passk.filter(pl.col("step").is_in([steps[0], steps[-1]]) & (pl.col("k_samples") == 1))
        .select(
            "step",
            "difficulty",
            "accuracy",
            pl.col("accuracy_se").alias("se over problems"),
            pl.col("n_problems").alias("problems"),
        )
        .sort("difficulty", "step")
    )
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
        "<h3>Interventions on the emergent heads vs control heads</h3>",
        "<p>Controls, as many heads as the emergent ones: same_layer, random heads of the emergent heads' "
        "layers (they may be the starting model's own circuit heads); base_circuit, heads of the starting "
        "model's circuit; outside, heads in no circuit of the run.</p>",
        _table(summary),
    ]


def write_section(tables: dict[str, pl.DataFrame], images: list[Path], run: str, task: str, out: Path) -> Path:
    """Write one run's section (an HTML fragment) atomically."""
    with atomic_file(out) as tmp:
        tmp.write_text(run_section(tables, images, run, task))
    return Path(out)


def write_report(config: dict[str, Any], sections: list[Path], out: Path) -> Path:
    """Join the runs' sections (in the order given) under the experiment's header."""
    missing = [str(p) for p in sections if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"{missing[0]} does not exist; run the plot stage first (snakemake {missing[0]})")
    created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = "".join(Path(p).read_text() for p in sections)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>sparks: {html.escape(config["experiment"])}</title>
<style>{_STYLE}</style></head><body>
<h1>sparks report: experiment {html.escape(config["experiment"])}</h1>
<p>sparks {sparks.__version__}, made {created}. Circuits: top {config["aggregate"]["top_n"]} edges by |EAP-IG score|
(m = {config["attribute"]["ig_steps"]}, metric {config["attribute"]["metric"]}); a head is emergent once it is active, absent
from the base circuit, and in at least {config["aggregate"]["stability_threshold"]:.0%} of
{config["aggregate"]["bootstrap"]} bootstrap circuits.</p>
{body}
</body></html>"""
    with atomic_file(out) as tmp:
        tmp.write_text(page)
    return Path(out)
