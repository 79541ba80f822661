"""A self-contained HTML report of one experiment.

The plot stage renders each run's detail section from the tables its rule names
(:func:`write_section`: its own figures, embedded as SVG, and its key tables, in a collapsed
``<details>``); ``sparks report`` puts the answer first (``sparks.plot.summary``), then the runs
side by side (``sparks.plot.compare``), the head explorer (``sparks.plot.explorer``) and the
runs' sections (:func:`write_report`). Every number comes from a table; nothing here computes a
result.
"""

from __future__ import annotations

import html
from pathlib import Path

import polars as pl

from sparks.atomic import atomic_file
from sparks.plot.style import DASH, data_uri, embedded_image, html_table, order_difficulty
from sparks.registry import FAILURE_CATEGORIES, PAIRED_METHOD

STYLE = """body{font-family:system-ui,sans-serif;max-width:1180px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:.92em}td,th{border:1px solid #ccc;padding:3px 8px}
td.num{text-align:right;font-variant-numeric:tabular-nums}td.txt{text-align:left}th{background:#f2f2f2;text-align:left}
img{max-width:100%;border:1px solid #eee}h2{border-bottom:2px solid #0072b2;margin-top:2em}
figure{margin:1em 0 2em}figcaption{font-size:.92em;color:#333;max-width:60em}
.note{font-size:.88em;color:#555}details{margin:.5em 0;border:1px solid #ddd;padding:.3em .8em}
summary{cursor:pointer;font-weight:600}code{white-space:pre-wrap;background:#f6f6f6}
.verdict-holds{color:#006d2c;font-weight:600}.verdict-fails{color:#a50f15;font-weight:600}
.verdict-inconclusive{color:#8c6d00;font-weight:600}
.verdict-untestable{color:#555}"""


def run_section(tables: dict[str, pl.DataFrame], images: list[Path], run: str, task: str, order: list[str]) -> str:
    """The HTML of one run's details: its figures (files, embedded) and its key tables, collapsed."""
    circuit, cohorts, faithfulness = tables["circuit"], tables["cohorts"], tables["faithfulness"]
    statuses = ("maintained", "emergent", "transient", "new", "lost")
    per_step = (
        circuit.group_by("step")
        .agg(
            pl.col("in_circuit").sum().alias("heads in circuit"),
            *[(pl.col("status") == s).sum().alias(s) for s in statuses],
        )
        .join(tables["similarity"].select("step", "jaccard_edges", "jaccard_heads"), on="step", how="left")
        .join(faithfulness.group_by("step").agg(pl.col("cpr").first(), pl.col("cmd").first()), on="step", how="left")
        .sort("step")
    )
    status = cohorts.group_by("status").agg(pl.len().alias("heads")).sort("status")
    emergent = (
        cohorts.filter(pl.col("status").is_in(["emergent", "transient"]))
        .group_by("cohort_step", "status")
        .agg(pl.len().alias("heads"), pl.format("a{}.h{}", "layer", "head").str.join(" ").alias("which"))
        .sort("cohort_step", "status")
    )
    anchor = f"run-{run}"
    parts = [f'<details id="{html.escape(anchor)}"><summary>Run {html.escape(run)} in detail (task {html.escape(task)}): '
             f"its own figures and tables</summary>"]  # fmt: skip
    parts += [embedded_image(path) for path in images]
    importance = tables["importance"]
    effects = (
        importance.filter(pl.col("step") == importance["step"].min())
        .join(cohorts.select("layer", "head", "status"), on=["layer", "head"], how="left")
        .select(pl.format("a{}.h{}", "layer", "head").alias("head"), pl.col("status").fill_null("never active"), "mean_effect")
        .sort("mean_effect", descending=True)
    )
    if "set_eval" in tables:
        parts += benchmark_gains(tables)
    parts += [
        "<h3>Heads by status at the final checkpoint</h3>",
        "<p>maintained: in the base circuit and in the final one; lost: in the base circuit, not the final one; "
        "emergent: called by the emergence test (see How far to trust the heads) and in the final circuit; "
        "transient: called, and gone by the final checkpoint. A head's cohort is the first checkpoint it was called at.</p>",
        html_table(status),
        "<h3>Emergence cohorts</h3>",
        html_table(emergent, headers={"cohort_step": "cohort (step)", "which": "heads (a{layer}.h{head})"}),
        "<h3>Head effect (the study's importance, App. A.6)</h3>",
        "<p>Importance: the summed |score| of a head's circuit edges out, normalised per checkpoint; effect "
        "(I - I<sub>first</sub>) / (I + I<sub>first</sub>), averaged over the later checkpoints. The five "
        "largest and five smallest:</p>",
        html_table(pl.concat([effects.head(5), effects.tail(5)]).unique(maintain_order=True)),
    ]
    if "think_modes" in tables:
        parts += think_section(tables["think_modes"], tables["think_overlap"])
    parts += [
        "<h3>Per checkpoint</h3>",
        "<p>Every head of a checkpoint's circuit counted once by its status there (maintained + emergent + "
        "transient + new = heads in circuit); lost heads are base heads outside it. CPR and CMD: the areas under the "
        "faithfulness curve and under |1 &minus; faithfulness| (the study's Eq. 6-7).</p>",
        html_table(per_step, note=f"{DASH}: no previous checkpoint to compare with."),
    ]
    parts += benchmark_section(tables["passk"], tables["interventions"], order)
    parts += failure_section(
        tables["failures"], tables["failure_shares"], tables["failure_changes"], tables["eval"], tables["problems"], order
    )
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
            html_table(emergence.select("step", "emergent_active", "new_heads", "reward")),
        ]
    parts += machine_section(tables.values())
    parts.append("</details>")
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
        html_table(
            overlap.select("step", "both", "think_on_only", "think_off_only", "jaccard"),
            note=f"{DASH}: no head active in either mode.",
        ),
        html_table(unique),
    ]


def _highlighted(completion: str, bad_step: str | None) -> str:
    """The escaped completion with its first wrong step marked."""
    text = html.escape(completion)
    if bad_step:
        text = text.replace(html.escape(bad_step), f"<mark>{html.escape(bad_step)}</mark>", 1)
    return f"<code>{text}</code>"


CATEGORY_TEXT = {
    "calculation_error": "a step of the trace does not check out",
    "loop": "the text repeats itself",
    "truncated": "the token limit was hit",
    "format": "no closed trace or no extractable answer",
    "no_trace": "a wrong answer given without any reasoning step (answered without reasoning)",
    "wrong_plan": "every step of the trace checks out, and the answer is wrong (reasoned correctly to a wrong answer)",
}


def failure_section(
    failures: pl.DataFrame,
    shares: pl.DataFrame,
    changes: pl.DataFrame,
    samples: pl.DataFrame,
    problems: pl.DataFrame,
    order: list[str],
    per_category: int = 3,
) -> list[str]:
    """Failure shares, the trade-off numbers with intervals, and real example traces per category:
    the problem, the reference answer, the model's answer and its completion, first wrong step marked."""
    evals = failures.filter(pl.col("origin") == "eval")
    steps = sorted(evals["step"].unique())
    ends = order_difficulty(
        shares.filter((pl.col("origin") == "eval") & pl.col("step").is_in([steps[0], steps[-1]])).select(
            "step", "difficulty", *FAILURE_CATEGORIES, "abandoned"
        ),
        order,
        "step",
    )
    changes = order_difficulty(
        changes.filter(pl.col("category") != "correct").select(
            "comparison",
            "alpha",
            "difficulty",
            "category",
            "share_before",
            "share_after",
            "delta",
            "ci_low",
            "ci_high",
            "n_problems",
        ),
        order,
    )
    samples = samples.select("step", "sample_id", "k", "completion", "answer")
    problems = problems.select(pl.col("problem_id").alias("sample_id"), "question", pl.col("answer").alias("reference"))
    examples = ["<h3>Example traces (first wrong step marked)</h3>"]
    for category in FAILURE_CATEGORIES[1:]:
        picked = evals.filter(pl.col("category") == category).sort("step", "sample_id", "k").head(per_category)
        if picked.is_empty():
            continue
        picked = picked.join(samples, on=["step", "sample_id", "k"]).join(problems, on="sample_id", how="left")
        examples.append(f"<h4>{category.replace('_', ' ')}: {html.escape(CATEGORY_TEXT[category])}</h4><ul>")
        for r in picked.iter_rows(named=True):
            wrong = "" if r["first_bad_step"] is None else f"; first wrong step: {r['first_bad_step'] + 1}"
            examples.append(
                f"<li>step {r['step']}, {html.escape(r['difficulty'])}: problem <code>{html.escape(str(r['question']))}</code>, "
                f"reference answer <b>{html.escape(str(r['reference']))}</b>, model's answer "
                f"<b>{html.escape(r['answer'] if r['answer'] is not None else DASH + ' (none found)')}</b>{wrong}<br>"
                f"{_highlighted(r['completion'], r['bad_step'])}</li>"
            )
        examples.append("</ul>")
    definitions = "".join(f"<li><b>{c.replace('_', ' ')}</b>: {html.escape(t)}</li>" for c, t in CATEGORY_TEXT.items())
    return [
        "<h3>Failure anatomy (base and final checkpoint)</h3>",
        "<p>Share of samples per category, computed from the text of each completion, the first that "
        f"applies in this order:</p><ul>{definitions}</ul><p>abandoned: a wrong sample whose trace had "
        "already reached the right answer.</p>",
        html_table(ends),
        "<h3>The trade-off in numbers</h3>",
        "<p>Change in each failure category's share, final minus base checkpoint, and scaled emergent heads "
        "minus each control's scaled heads (same alpha), with 95 % bootstrap intervals over problems.</p>",
        html_table(changes, note=f"scale \u03b1 {DASH}: the final-vs-base comparison has none."),
        *examples,
    ]


def benchmark_section(passk: pl.DataFrame, interventions: pl.DataFrame, order: list[str]) -> list[str]:
    """Accuracy by difficulty (base vs final) and every intervention with its checkpoint and heads."""
    steps = sorted(passk["step"].unique())
    accuracy = order_difficulty(
        passk.filter(pl.col("step").is_in([steps[0], steps[-1]]) & (pl.col("k_samples") == 1)).select(
            "difficulty", "step", "accuracy", "accuracy_se", "n_problems"
        ),
        order,
        "step",
    )
    table = order_difficulty(
        interventions.filter(pl.col("k_samples") == interventions["k_samples"].min()).select(
            pl.col("step").alias("checkpoint"),
            "kind",
            "alpha",
            "heads_from",
            "seed",
            "heads",
            "difficulty",
            "accuracy",
            "n_samples",
        ),
        order,
        "kind",
        "alpha",
        "heads_from",
        "seed",
    )
    table = table.sort(
        "kind", "alpha", pl.col("heads_from") != "none", "heads_from", "seed", nulls_last=False, maintain_order=True
    )
    return [
        "<h3>Accuracy, base vs final checkpoint</h3>",
        html_table(accuracy),
        "<h3>Interventions on the emergent heads vs control heads</h3>",
        "<p>Ablation acts on the final checkpoint, scaling on the starting model (the checkpoint column). "
        "Controls, as many heads as the emergent ones, one row per draw with the heads drawn: same_layer, random "
        "heads of the emergent heads' layers (they may be the starting model's own circuit heads); base_circuit, "
        "heads of the starting model's circuit; outside, heads in no circuit of the run. The unmodified row "
        "(heads: none) is the same checkpoint sampled again inside the intervention job, with the seeds every "
        "condition shares; it differs from the accuracy table above (other seeds) by sampling noise only: "
        "compare each intervention with it.</p>",
        html_table(table, note=f"{DASH}: not applicable (no scale factor for ablation, no draw for fixed heads)."),
    ]


def benchmark_gains(tables: dict[str, pl.DataFrame]) -> list[str]:
    """The run's per-benchmark gains and losses, base to final checkpoint, largest gain first."""
    from sparks.plot import all_sets
    from sparks.plot.benchmarks import gains

    table = gains(all_sets(tables, "eval"))
    return [
        "<h3>Gains and losses per evaluation set</h3>",
        "<p>Accuracy on each set the run was evaluated on (its own task and runs.&lt;name&gt;.evaluate_on), "
        "at the first and the last checkpoint; the change with its 95 % interval over the set's problems "
        "(each problem's share of correct samples, paired on the problem). An interval that holds 0 allows both answers.</p>",
        html_table(table, headers={"task": "evaluation set", "low": "95 % low", "high": "95 % high", "n_problems": "problems"}),
    ]


def write_section(
    tables: dict[str, pl.DataFrame], images: list[Path], run: str, task: str, order: list[str], out: Path, note: str = ""
) -> Path:
    """Write one run's section (an HTML fragment, ``note`` first: :func:`behaviour_note`) atomically."""
    with atomic_file(out) as tmp:
        tmp.write_text(run_section(tables, images, run, task, order).replace("</summary>", "</summary>" + note, 1))
    return Path(out)


def behaviour_note(config: dict, run: str, pair_kinds: pl.DataFrame | None = None) -> str:
    """Which pairs the run's circuits are scored on and which prompts its accuracy comes from, with
    a warning when they are not the same behaviour (another think mode, or sets the circuits never
    saw), and with ``pair_kinds`` (attribute.compare_pairs) how far operand and style pairs agree."""
    from sparks.config import eval_sets, pairs_kind

    task = config["runs"][run]["task"]
    circuit_mode, eval_mode = ("on" if config[s]["think"] else "off" for s in ("attribute", "evaluate"))
    sets = eval_sets(config, run)
    text = (
        f"Circuits: {pairs_kind(config['attribute'], task)} pairs of {task}, think {circuit_mode} (attribute.pairs, "
        f"attribute.think). Accuracy, ablation and scaling: think-{eval_mode} prompts of {', '.join(sets)} "
        f"(evaluate.think, runs.{run}.evaluate_on)."
    )
    differ = ["the think mode"] * (circuit_mode != eval_mode) + ["the problems"] * (len(sets) > 1)
    if differ:
        text += (
            f" <strong>Warning: the circuits and the accuracy differ in {' and '.join(differ)}</strong>: the heads are "
            "those of the circuit's behaviour, read against another one's accuracy."
        )
    if pair_kinds is not None:
        operand, style = pl.col("called_operand"), pl.col("called_style")
        parts = []
        for side, mask in (
            ("on both kinds", operand & style),
            ("on operand pairs only", operand & ~style),
            ("on style pairs only", style & ~operand),
        ):
            heads = [f"a{r['layer']}.h{r['head']}" for r in pair_kinds.filter(mask).iter_rows(named=True)]
            parts.append(f"{len(heads)} called {side} ({' '.join(heads) or 'none'})")
        text += (
            " Emergence calls on the same checkpoints scored on style pairs, think on (attribute.compare_pairs): "
            + ", ".join(parts)
            + "."
        )
    return f"<p>{text}</p>"


REPORT_INPUTS = (
    "circuit", "cohorts", "frequency", "stability", "agreement", "null_calls", "planted", "circuit_rules", "heads", "passk", "failure_shares",
    "train_log", "interventions", "replicate_heads", "replicate_claims", "policy_comparison",
)  # fmt: skip
"""The tables ``sparks report`` reads, every run's (their provenance ``run`` tells them apart)."""
OPTIONAL_INPUTS = ("policy_comparison",)  # one per head-policy run: none when the config has none

GLOSSARY = {
    "a{layer}.h{head}": "attention head {head} of layer {layer}, both counted from 0 (a1.h4: layer 1, head 4)",
    "EAP-IG": "edge attribution patching with integrated gradients: each edge's score is its estimated effect "
    "on the metric when patched from the clean to the corrupted input, over m interpolation steps",
    "m": "the number of integrated-gradient steps (attribute.ig_steps)",
    "circuit": "the top edges by |EAP-IG score| of a checkpoint; a head is in it (active) when a circuit edge touches it",
    "bootstrap probability": "the share of circuits built on resampled pairs that hold the head",
    "p_change": "the share of paired resamples (the same pairs at the base and at the checkpoint) in which the head is "
    "out of the base's circuit and in the checkpoint's",
    "exact effect": "the metric's change when one head's output is patched from the corrupted into the clean run, "
    "averaged over pairs: the ground truth EAP-IG approximates",
    "transient": "a head the emergence test called that is gone from the final checkpoint's circuit",
    "CPR / CMD": "the areas under the faithfulness curve and under |1 - faithfulness| (the study's Eq. 6-7); "
    "faithfulness is (m(circuit) - m(corrupt)) / (m(model) - m(corrupt))",
    "pass@k / success@k": "one of k samples drawn is correct (unbiased) / a correct answer among the first k in generation order",
    "interval": f"95 %; {PAIRED_METHOD}",
    "p / Holm-adjusted": "a claim's one-sided p-value, read back from its interval, and Holm's adjustment over the run's "
    "claims (one family); the verdict comes from the adjusted p at 2.5 % in each direction",
}


def policy_section(table: pl.DataFrame | None, order: list[str]) -> str:
    """The head policies against their plain runs (policy_comparison, one table per policy run):
    per difficulty the changes in accuracy and in the calculation-error and no-trace shares, the
    emergent heads of each side, and the hypotheses' verdicts; empty without a policy run."""
    from sparks.plot.summary import number, verdict_html

    if table is None or table.is_empty():
        return ""
    parts = [
        '<h2 id="policies">Head policies</h2>',
        (
            "<p>Each head-policy run (runs.&lt;name&gt;.heads) against its plain run (heads.compare_to): both sides' "
            "final checkpoints, each policy replicate paired with the plain replicate of the same seed, paired on "
            "problems. Changes are policy minus plain with their 95 % interval; a share is of all samples.</p>"
        ),
    ]
    for group in table["run"].unique(maintain_order=True).to_list():
        rows = table.filter(pl.col("run") == group)
        first = rows.row(0, named=True)
        changes = rows.filter(pl.col("kind").is_in(["accuracy", "calculation_error", "no_trace"]))
        tiers = [d for d in order if d in changes["difficulty"].to_list()]
        tiers += [d for d in changes["difficulty"].unique(maintain_order=True).to_list() if d not in tiers and d != "all"]
        tiers += ["all"] * ("all" in changes["difficulty"].to_list() and "all" not in tiers)
        cells = []
        for tier in tiers:
            line = {"difficulty": tier}
            for kind, label in (
                ("accuracy", "accuracy change"),
                ("calculation_error", "calculation-error share change"),
                ("no_trace", "no-trace share change"),
            ):
                hit = changes.filter((pl.col("kind") == kind) & (pl.col("difficulty") == tier))
                line[label] = number(hit["value"][0], hit["low"][0], hit["high"][0]) if hit.height else None
            cells.append(line)
        heads = {r["name"]: r for r in rows.filter(pl.col("kind") == "heads").iter_rows(named=True)}
        items = "".join(
            f"<li>{html.escape(who)}: {html.escape(heads[name]['detail'] or 'none')}</li>"
            for name, who in (("heads_policy", f"{group} (policy)"), ("heads_plain", f"{first['plain']} (plain)"))
            if name in heads
        )
        verdicts = []
        for r in rows.filter(pl.col("kind") == "hypothesis").iter_rows(named=True):
            tested = f"p = {r['p_value']:.3g}, Holm-adjusted {r['p_adjusted']:.3g}" if r["p_adjusted"] is not None else ""
            verdicts.append(
                f'<tr><td class="txt">{html.escape(r["name"])}: {html.escape(r["statement"])}<br>'
                f"<span class='note'>{html.escape(r['statistic'])}</span></td>"
                f'<td class="txt">{verdict_html(r["verdict"], r["high"])}</td>'
                f'<td class="txt">{number(r["value"], r["low"], r["high"])}<br><span class="note">{tested}</span></td>'
                f'<td class="txt">{html.escape(r["detail"] or "")}</td></tr>'
            )
        parts += [
            (
                f'<h3 id="policy-{html.escape(group)}">{html.escape(group)}: {html.escape(first["policy"] or DASH)}, '
                f"against {html.escape(first['plain'] or DASH)}</h3>"
            ),
            html_table(pl.DataFrame(cells), note=f"{DASH}: not measured on that difficulty."),
            f"<p>Emergent heads (in how many replicates):</p><ul>{items}</ul>",
            (
                "<table><thead><tr><th>hypothesis</th><th>verdict</th><th>value [95 % interval]</th><th>detail</th>"
                f"</tr></thead><tbody>{''.join(verdicts)}</tbody></table>"
            ),
        ]
    parts.append(
        "<p class='note'>H2 (not lowering middle accuracy) is a non-inferiority statement read with the claims' "
        "verdicts: reproduced means the policy significantly raises it, inconclusive that the interval's lower end "
        "(a loss the data cannot exclude) is below zero. The combined hypothesis is contradicted if H1 or H2 is, "
        "reproduced if H1 is and H2 is not contradicted (sparks.aggregate.policies).</p>"
    )
    return "\n".join(parts)


def write_report(
    config: dict,
    sections: list[Path],
    tables: dict[str, pl.DataFrame],
    models: list[Path],
    out: Path,
) -> Path:
    """The report: the answer first, a table of contents, each run's setup, the runs side by side,
    the head explorer and the runs' own sections (in the order given), from every run's ``tables``
    (REPORT_INPUTS, all runs' rows together) and the prepared ``models`` (their accuracy tables)."""
    from datetime import UTC, datetime

    import sparks
    from sparks.config import fixed_circuit_size, task_difficulties
    from sparks.plot.compare import comparisons
    from sparks.plot.explorer import explorer_html
    from sparks.plot.summary import claims_matrix, group_summary, setup_table
    from sparks.plot.trust import sham_groups, trust_section
    from sparks.tables import read_table

    missing = [str(p) for p in sections if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"{missing[0]} does not exist; run the plot stage first (snakemake {missing[0]})")
    accuracy = [
        read_table(Path(m) / "accuracy.parquet", "accuracy").with_columns(pl.lit(Path(m).name).alias("role"))
        for m in models
        if (Path(m) / "accuracy.parquet").is_file()
    ]
    accuracy_table = pl.concat(accuracy) if accuracy else pl.DataFrame(schema={"role": pl.String})
    groups: dict[str, list[str]] = config["claim_groups"]
    runs = [r for rs in groups.values() for r in rs]
    tasks = dict.fromkeys(config["runs"][r]["task"] for r in runs)
    order = list(dict.fromkeys(d for task in tasks for d in task_difficulties(config["tasks"][task])))
    summaries = "".join(group_summary(g, rs, config["runs"][rs[0]]["method"], tables, order) for g, rs in groups.items())
    figures = comparisons(tables, runs, order)
    policies = policy_section(tables.get("policy_comparison"), order)
    toc = [("summary", "The answer first")] + [("policies", "Head policies")] * bool(policies)
    toc += [("trust", "How far to trust the heads"), ("setup", "Setup of each run")]
    toc.append(("compare", "The runs side by side"))
    toc.append(("", "<ul>" + "".join(f'<li><a href="#fig-{c.name}">{html.escape(c.title)}</a></li>' for c in figures) + "</ul>"))
    toc += [("explorer-section", "Head explorer"), ("details", "Each run in detail"), ("terms", "Terms")]
    created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    figure_html = "".join(
        f'<figure id="fig-{c.name}"><h3>{html.escape(c.title)}</h3>'
        f'<img alt="{html.escape(c.title)}" src="{data_uri(c.svg.encode(), "svg+xml")}">'
        f"<figcaption>{html.escape(c.caption)}</figcaption></figure>"
        for c in figures
    )
    aggregate, attribute = config["aggregate"], config["attribute"]
    fixed = fixed_circuit_size(aggregate["top_n"], aggregate["faithfulness_target"])
    size = (
        f"the top {fixed} edges by |EAP-IG score|"
        if fixed is not None
        else f"the fewest top edges reaching faithfulness {aggregate['faithfulness_target']}"
    )
    terms = "".join(f"<dt><b>{html.escape(k)}</b></dt><dd>{html.escape(v)}</dd>" for k, v in GLOSSARY.items())
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>sparks: {html.escape(config["experiment"])}</title><style>{STYLE}</style></head><body>
<h1>sparks report: experiment {html.escape(config["experiment"])}</h1>
<p class="note">sparks {sparks.__version__}, made {created}. Circuits: {size} (EAP-IG, m = {attribute["ig_steps"]},
metric {attribute["metric"]}); the emergence test below uses {aggregate["bootstrap"]} paired bootstrap resamples and a
threshold of {aggregate["stability_threshold"]:.0%}; exact per-head effects {"on" if attribute["exact"] == "on" else "off"}.</p>
<h2 id="summary">The answer first</h2>
<p>Each of the study's claims, tested on each run (verdict; value with its 95 % interval; the statistic):</p>
{claims_matrix(list(groups), tables["replicate_claims"], order)}
{summaries}
{policies}
<h2 id="trust">How far to trust the heads</h2>
{trust_section(groups, tables, sham_groups(config, groups))}
<nav><h2>Contents</h2><ol>{"".join(f'<li><a href="#{a}">{t}</a></li>' if a else t for a, t in toc)}</ol></nav>
<h2 id="setup">Setup of each run</h2>
{setup_table(config, groups, accuracy_table)}
<h2 id="compare">The runs side by side</h2>
{figure_html}
<h2 id="explorer-section">Head explorer</h2>
{explorer_html(tables, runs, order)}
<h2 id="details">Each run in detail</h2>
{"".join(Path(p).read_text() for p in sections)}
<h2 id="terms">Terms</h2><dl>{terms}</dl>
</body></html>"""
    with atomic_file(out) as tmp:
        tmp.write_text(page)
    return Path(out)
