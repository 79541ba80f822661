"""One look for every figure and table of the report: the order and colour of difficulties and
runs, readable column names, and how a cell is written.

Difficulties are ordered as the task's config lists them (easiest first, ``config.task_difficulties``)
everywhere; each has one colour, and each run one colour, from the Okabe-Ito palette (safe for
the common colour-vision deficiencies). A missing value is written as a dash, never ``None``.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import polars as pl

DASH = "\u2013"  # a missing value: "not applicable here" (explained under each table)
DIFFICULTY_COLOURS = ("#009e73", "#e69f00", "#d55e00", "#f0e442", "#999999")  # easy green .. hard vermilion
RUN_COLOURS = ("#0072b2", "#cc79a7", "#56b4e9", "#000000")  # the rest of Okabe-Ito: no run shares a difficulty's colour
DPI = 200  # PNGs at twice the 100 dpi of a plain screen: sharp on high-resolution displays


def difficulty_palette(order: Sequence[str]) -> dict[str, str]:
    """One colour per difficulty, in the task's order (easiest first)."""
    return {name: DIFFICULTY_COLOURS[i % len(DIFFICULTY_COLOURS)] for i, name in enumerate(order)}


def run_palette(runs: Sequence[str]) -> dict[str, str]:
    """One colour per run, in the config's order."""
    return {name: RUN_COLOURS[i % len(RUN_COLOURS)] for i, name in enumerate(runs)}


def order_difficulty(table: pl.DataFrame, order: Sequence[str], *then: str) -> pl.DataFrame:
    """``table`` sorted by difficulty in the task's order (unknown names last), then by ``then``."""
    rank = {name: i for i, name in enumerate(order)}
    key = pl.col("difficulty").replace_strict(rank, default=len(rank), return_dtype=pl.Int64)
    return table.sort(key, *then) if then else table.sort(key)


HEADERS = {  # column name -> what a reader sees (units in brackets)
    "step": "checkpoint (step)",
    "p_value": "p (one-sided)",
    "p_adjusted": "p, Holm-adjusted",
    "difficulty": "difficulty",
    "accuracy": "accuracy",
    "accuracy_se": "SE over problems",
    "n_problems": "problems",
    "n_samples": "samples",
    "heads_from": "heads",
    "heads": "heads intervened",
    "kind": "intervention",
    "alpha": "scale \u03b1",
    "seed": "draw",
    "cpr": "CPR (area under faithfulness)",
    "cmd": "CMD (area under |1 \u2212 faithfulness|)",
    "jaccard_edges": "Jaccard of edges vs previous",
    "jaccard_heads": "Jaccard of heads vs previous",
    "active heads": "heads in circuit",
    "mean_effect": "effect (\u22121 dropped .. +1 new)",
    "share_before": "share before",
    "share_after": "share after",
    "delta": "change",
    "ci_low": "95 % CI low",
    "ci_high": "95 % CI high",
    "comparison": "comparison",
    "category": "category",
    "n_replicates": "replicates",
    "value": "value",
    "low": "95 % CI low",
    "high": "95 % CI high",
}


def header(column: str) -> str:
    return HEADERS.get(column, column.replace("_", " "))


def cell(value: object, digits: int = 3) -> tuple[str, bool]:
    """(text, numeric) of one value: floats to ``digits`` places, a dash for a missing or empty value."""
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return DASH, False
    if isinstance(value, bool):
        return ("yes" if value else "no"), False
    if isinstance(value, float):
        return f"{value:.{digits}f}", True
    if isinstance(value, int):
        return str(value), True
    return str(value), False


def html_table(df: pl.DataFrame, digits: int = 3, headers: dict[str, str] | None = None, note: str = "") -> str:
    """``df`` as an HTML table: readable headers, numbers right-aligned, text left-aligned, a dash
    for a missing value (``note`` says what it means where the caption should)."""
    names = [(headers or {}).get(c, header(c)) for c in df.columns]
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    rows = []
    for row in df.iter_rows():
        cells = []
        for value in row:
            text, numeric = cell(value, digits)
            cells.append(f'<td class="{"num" if numeric else "txt"}">{html.escape(text)}</td>')
        rows.append(f"<tr>{''.join(cells)}</tr>")
    caption = f"<p class='note'>{html.escape(note)}</p>" if note else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{caption}"


def head_name(layer: int, head: int) -> str:
    """A head as the tables name it: ``a{layer}.h{head}`` (attention layer, head index, from 0)."""
    return f"a{layer}.h{head}"


def join_names(names: Iterable[str]) -> str:
    names = list(names)
    return ", ".join(names) if names else "none"


def data_uri(data: bytes, kind: str) -> str:
    """An image embedded as a data URI (``kind``: svg+xml or png); each SVG stays its own document."""
    return f"data:image/{kind};base64,{base64.b64encode(data).decode()}"


def embedded_image(path: Path) -> str:
    """A figure file embedded in HTML: SVG (vector) or PNG."""
    src = data_uri(path.read_bytes(), "svg+xml" if path.suffix == ".svg" else "png")
    return f'<p><img alt="{html.escape(path.stem)}" loading="lazy" src="{src}"></p>'
