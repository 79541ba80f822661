"""The report's head explorer: a layer x head grid per run; clicking a head shows, for every run
(and replicate), its EAP-IG score, rank, bootstrap probability and status at each checkpoint, and
the interventions whose heads included it. Runs toggle on and off.

Self-contained and offline: the data is embedded as JSON, drawn by a few lines of plain
JavaScript (no library, nothing fetched). The data comes from the Parquet tables at report time.
"""

from __future__ import annotations

import html
import json

import polars as pl

from sparks.plot.style import head_name, run_palette

STATUS_FILL = {"maintained": "#999999", "emergent": "#0072b2", "new": "#f0e442", "lost": "#d55e00", "inactive": "#ffffff"}


def explorer_data(tables: dict[str, pl.DataFrame], runs: list[str], order: list[str]) -> dict:
    """Everything the explorer shows, by run and head: per checkpoint (step, score, rank,
    p_in_circuit, in circuit, status), and per intervention touching the head (kind, heads_from,
    draw, alpha, difficulty, accuracy, the unmodified accuracy of the same kind and difficulty),
    difficulties in the task's ``order``."""
    from sparks.plot.style import order_difficulty

    heads = tables["heads"].select("run", "step", "layer", "head", "score", "rank")
    stability = tables["stability"].select("run", "step", "layer", "head", "p_in_circuit")
    circuit = tables["circuit"].select("run", "step", "layer", "head", "in_circuit", "status")
    per_step = (
        circuit.join(heads, on=["run", "step", "layer", "head"], how="left")
        .join(stability, on=["run", "step", "layer", "head"], how="left")
        .sort("run", "layer", "head", "step")
    )
    interventions = tables["interventions"]
    interventions = interventions.filter(pl.col("k_samples") == interventions["k_samples"].min())
    plain = interventions.filter(pl.col("heads_from") == "none").select(
        "run", "kind", "difficulty", pl.col("accuracy").alias("unmodified")
    )
    touched = (
        interventions.filter(pl.col("heads_from") != "none")
        .join(plain, on=["run", "kind", "difficulty"], how="left")
        .with_columns(pl.col("heads").str.split(" ").alias("members"))
    )
    touched = order_difficulty(touched, order).sort("kind", "alpha", "heads_from", "seed", maintain_order=True)
    cohorts = tables["cohorts"].select("run", "layer", "head", "status", "cohort_step")
    layers = int(circuit["layer"].max()) + 1
    n_heads = int(circuit["head"].max()) + 1
    data: dict = {"layers": layers, "heads": n_heads, "runs": {}}
    colours = run_palette(runs)  # each run's colour, as in the side-by-side figures
    for run in runs:
        rows = per_step.filter(pl.col("run") == run)
        final = rows.filter(pl.col("step") == rows["step"].max())
        cells: dict[str, dict] = {}
        for (layer, head), part in rows.group_by("layer", "head", maintain_order=True):
            name = head_name(layer, head)
            cells[name] = {
                "checkpoints": part.select("step", "score", "rank", "p_in_circuit", "in_circuit", "status").to_dicts(),
                "interventions": touched.filter((pl.col("run") == run) & pl.col("members").list.contains(name))
                .select("step", "kind", "heads_from", "seed", "alpha", "difficulty", "accuracy", "unmodified")
                .to_dicts(),
            }
        cohort = {
            head_name(layer, head): {"status": status, "cohort_step": step}
            for layer, head, status, step in cohorts.filter(pl.col("run") == run).drop("run").rows()
        }
        data["runs"][run] = {
            "colour": colours[run],
            "final": {head_name(r["layer"], r["head"]): r["status"] for r in final.iter_rows(named=True)},
            "cohort": cohort,
            "cells": cells,
        }
    return data


_SCRIPT = """
(function () {
  const data = JSON.parse(document.getElementById('explorer-data').textContent);
  const fill = %(fill)s;
  const root = document.getElementById('explorer-grids');
  const panel = document.getElementById('explorer-panel');
  const toggles = document.getElementById('explorer-toggles');
  const shown = new Set(Object.keys(data.runs));
  const fmt = (v, d) => (v === null || v === undefined) ? '\\u2013' : (typeof v === 'number' ? v.toFixed(d) : String(v));
  const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;'}[c]));
  let selected = null;
  function grids() {
    root.innerHTML = '';
    for (const [run, info] of Object.entries(data.runs)) {
      if (!shown.has(run)) continue;
      const box = document.createElement('div');
      box.className = 'xgrid';
      let cells = '<div class="xtitle" style="color:' + info.colour + '">' + esc(run) + '</div><table class="xtable"><tr><th></th>';
      for (let h = 0; h < data.heads; h++) cells += '<th>h' + h + '</th>';
      cells += '</tr>';
      for (let l = 0; l < data.layers; l++) {
        cells += '<tr><th>a' + l + '</th>';
        for (let h = 0; h < data.heads; h++) {
          const node = 'a' + l + '.h' + h;
          const status = info.final[node] || 'inactive';
          const mark = (info.cohort[node] && info.cohort[node].status === 'emergent') ? ' xemergent' : '';
          const on = node === selected ? ' xselected' : '';
          cells += '<td><button class="xcell' + mark + on + '" data-run="' + esc(run) + '" data-node="' + node + '" title="' + esc(run) + ' ' + node + ': ' + status + ' at the final checkpoint" style="background:' + fill[status] + '"></button></td>';
        }
        cells += '</tr>';
      }
      box.innerHTML = cells + '</table>';
      root.appendChild(box);
    }
  }
  function show(node) {
    selected = node;
    let out = '<h4>' + node + ' (attention layer ' + node.split('.')[0].slice(1) + ', head ' + node.split('.h')[1] + ')</h4>';
    for (const [run, info] of Object.entries(data.runs)) {
      if (!shown.has(run)) continue;
      const cell = info.cells[node];
      if (!cell) continue;
      const cohort = info.cohort[node];
      const about = cohort ? (cohort.status + (cohort.cohort_step !== null ? ', cohort step ' + cohort.cohort_step : '')) : 'never in a circuit';
      out += '<div class="xrun" data-run="' + esc(run) + '"><b style="color:' + info.colour + '">' + esc(run) + '</b>: ' + esc(about);
      out += '<table data-run="' + esc(run) + '"><thead><tr><th>checkpoint (step)</th><th>EAP-IG score</th><th>rank (1 = largest |score|)</th><th>bootstrap probability</th><th>in circuit</th><th>status</th></tr></thead><tbody>';
      for (const c of cell.checkpoints) {
        out += '<tr data-step="' + c.step + '"><td class="num">' + c.step + '</td><td class="num" data-col="score">' + fmt(c.score, 4) + '</td><td class="num" data-col="rank">' + fmt(c.rank, 0) + '</td><td class="num" data-col="p_in_circuit">' + fmt(c.p_in_circuit, 2) + '</td><td class="txt" data-col="in_circuit">' + (c.in_circuit ? 'yes' : 'no') + '</td><td class="txt" data-col="status">' + c.status + '</td></tr>';
      }
      out += '</tbody></table>';
      if (cell.interventions.length) {
        out += '<table class="xinterventions"><thead><tr><th>checkpoint</th><th>intervention</th><th>heads</th><th>draw</th><th>scale \\u03b1</th><th>difficulty</th><th>accuracy</th><th>unmodified</th></tr></thead><tbody>';
        for (const i of cell.interventions) {
          out += '<tr><td class="num">' + i.step + '</td><td class="txt">' + i.kind + '</td><td class="txt">' + i.heads_from + '</td><td class="num">' + fmt(i.seed, 0) + '</td><td class="num">' + fmt(i.alpha, 2) + '</td><td class="txt">' + esc(i.difficulty) + '</td><td class="num">' + fmt(i.accuracy, 3) + '</td><td class="num">' + fmt(i.unmodified, 3) + '</td></tr>';
        }
        out += '</tbody></table>';
      } else {
        out += '<p class="note">Not intervened on in this run.</p>';
      }
      out += '</div>';
    }
    panel.innerHTML = out;
    for (const b of root.querySelectorAll('.xcell')) b.classList.toggle('xselected', b.dataset.node === node);
  }
  for (const run of Object.keys(data.runs)) {
    const label = document.createElement('label');
    label.innerHTML = '<input type="checkbox" checked data-toggle="' + esc(run) + '"> ' + esc(run) + ' ';
    label.querySelector('input').addEventListener('change', (e) => {
      if (e.target.checked) shown.add(run); else shown.delete(run);
      grids();
      if (selected) show(selected);
    });
    toggles.appendChild(label);
  }
  root.addEventListener('click', (e) => {
    const b = e.target.closest('.xcell');
    if (b) show(b.dataset.node);
  });
  grids();
})();
"""

_CSS = """#explorer-grids{display:flex;flex-wrap:wrap;gap:1.5em}.xtitle{font-weight:600}
.xtable{border-collapse:collapse;margin:0}.xtable td,.xtable th{border:none;padding:1px;font-size:.75em}
.xcell{width:18px;height:18px;border:1px solid #888;padding:0;cursor:pointer}.xemergent{outline:2px solid #000}
.xselected{outline:3px solid #cc79a7}#explorer-panel{margin-top:1em}.xrun{margin:.6em 0}"""


def explorer_html(tables: dict[str, pl.DataFrame], runs: list[str], order: list[str]) -> str:
    """The explorer: its data, markup, style and script, in one fragment."""
    data = json.dumps(explorer_data(tables, runs, order), separators=(",", ":")).replace("</", "<\\/")
    legend = " ".join(
        f'<span style="display:inline-block;width:12px;height:12px;border:1px solid #888;background:{c}"></span> {html.escape(s)}'
        for s, c in STATUS_FILL.items()
    )
    return (
        f"<style>{_CSS}</style>"
        f'<div id="explorer"><p>Runs: <span id="explorer-toggles"></span></p>'
        f"<p class='note'>Colour: the head's status at the run's final checkpoint: {legend}; outlined: emergent at "
        "some checkpoint. Click a head for its numbers in every run shown.</p>"
        '<div id="explorer-grids"></div><div id="explorer-panel"><p class="note">No head selected.</p></div></div>'
        f'<script type="application/json" id="explorer-data">{data}</script>'
        f"<script>{_SCRIPT % {'fill': json.dumps(STATUS_FILL)}}</script>"
    )
