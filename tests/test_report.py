"""The report's pieces on hand-made tables: cells and tables, difficulty order, the claims' words,
and the explorer's data."""

from __future__ import annotations

import html

import polars as pl

from sparks.plot.explorer import explorer_data, explorer_html
from sparks.plot.style import DASH, difficulty_palette, html_table, order_difficulty, run_palette
from sparks.plot.summary import claims_matrix, number

ORDER = ["easy", "medium", "hard"]


def test_tables_write_a_dash_for_missing_values_and_align_numbers():
    table = html_table(pl.DataFrame({"difficulty": ["easy", None], "accuracy": [0.5, None], "n_problems": [3, 4]}))
    assert "None" not in table and "nan" not in table
    assert f'<td class="txt">{DASH}</td>' in table and '<td class="num">0.500</td>' in table
    assert '<td class="num">3</td>' in table and '<td class="txt">easy</td>' in table
    assert "<th>problems</th>" in table and "n_problems" not in table  # readable headers
    for missing in (float("nan"), ""):  # e.g. the unmodified model's empty head list
        assert f'<td class="txt">{DASH}</td>' in html_table(pl.DataFrame({"x": [missing]}))


def test_difficulties_keep_the_tasks_order_and_colours():
    table = pl.DataFrame({"difficulty": ["hard", "easy", "medium", "easy"], "step": [0, 10, 0, 0]})
    assert order_difficulty(table, ORDER, "step").rows() == [("easy", 0), ("easy", 10), ("medium", 0), ("hard", 0)]
    palette = difficulty_palette(ORDER)
    assert list(palette) == ORDER and len(set(palette.values())) == 3
    assert run_palette(["sft", "grpo"]) != run_palette(["grpo", "sft"])
    assert not set(run_palette(["sft", "grpo", "distill"]).values()) & set(palette.values())  # runs and difficulties apart


def test_numbers_are_signed_with_their_interval_and_counts_plain():
    assert number(0.1234, 0.01, 0.2) == "+0.123 [0.010, 0.200]"
    assert number(-2.0, None, None) == "-2" and number(3.0, None, None) == "3"
    assert number(None, None, None) == DASH


def claims_rows(run: str) -> list[dict]:
    base = {"run": run, "statistic": "accuracy change", "n_replicates": 1, "detail": ""}
    return [
        {
            **base,
            "claim": f"gain_{d}",
            "statement": f"post-training raises {d} accuracy",
            "value": v,
            "low": lo,
            "high": hi,
            "verdict": verdict,
        }
        for d, v, lo, hi, verdict in (
            ("hard", -0.1, -0.2, 0.0, "inconclusive"),
            ("easy", 0.1, 0.05, 0.15, "reproduced"),
            ("tiny", -0.2, -0.3, -0.1, "contradicted"),
            ("medium", None, None, None, "not testable here"),
        )
    ]


def test_claims_matrix_orders_claims_and_words_verdicts():
    claims = pl.DataFrame(claims_rows("sft") + claims_rows("grpo"))
    text = claims_matrix(["sft", "grpo"], claims, ORDER)
    assert text.index("raises easy") < text.index("raises medium") < text.index("raises hard")
    assert text.count(">reproduced<") == 2 and text.count(">contradicted<") == 2 and text.count("not testable here") == 2
    assert text.count(">inconclusive (allows up to +0.000)<") == 2  # the largest effect the interval still allows
    tested = [r for r in claims_rows("sft") if r["value"] is not None]
    with_p = pl.DataFrame([{**r, "p_value": 0.01, "p_adjusted": 0.03} for r in tested])
    assert claims_matrix(["sft"], with_p, ORDER).count("p = 0.01, Holm-adjusted 0.03") == len(tested) == 3
    assert text.index("<th>sft</th>") < text.index("<th>grpo</th>")


def explorer_tables() -> dict[str, pl.DataFrame]:
    grid = [(run, step, layer, head) for run in ("sft", "grpo") for step in (0, 10) for layer in (0, 1) for head in (0, 1)]
    keys = pl.DataFrame(grid, schema=["run", "step", "layer", "head"], orient="row")
    status = pl.when((pl.col("layer") == 1) & (pl.col("head") == 0) & (pl.col("step") == 10))
    return {
        "heads": keys.with_columns(
            (pl.col("step") + pl.col("layer") * 2 + pl.col("head")).cast(pl.Float64).alias("score"),
            (pl.col("layer") * 2 + pl.col("head") + 1).alias("rank"),
        ),
        "stability": keys.with_columns(pl.lit(0.5).alias("p_in_circuit")),
        "circuit": keys.with_columns(
            status.then(True).otherwise(False).alias("in_circuit"),
            status.then(pl.lit("emergent")).otherwise(pl.lit("inactive")).alias("status"),
        ),
        "cohorts": pl.DataFrame({"run": ["sft"], "layer": [1], "head": [0], "status": ["emergent"], "cohort_step": [10]}),
        "interventions": pl.DataFrame(
            {
                "run": ["sft"] * 4,
                "step": [10] * 4,
                "kind": ["ablate"] * 4,
                "heads_from": ["none", "emergent", "emergent", "same_layer"],
                "seed": [None, None, None, 0],
                "heads": ["", "a1.h0", "a1.h0", "a0.h1"],
                "alpha": [None] * 4,
                "difficulty": ["hard", "hard", "easy", "hard"],
                "accuracy": [0.5, 0.2, 0.9, 0.45],
                "k_samples": [1] * 4,
            }
        ),
    }


def test_explorer_data_follows_each_head_through_every_run():
    data = explorer_data(explorer_tables(), ["sft", "grpo"], ORDER)
    assert (data["layers"], data["heads"], list(data["runs"])) == (2, 2, ["sft", "grpo"])
    cell = data["runs"]["sft"]["cells"]["a1.h0"]
    assert [(c["step"], c["score"], c["rank"], c["status"]) for c in cell["checkpoints"]] == [
        (0, 2.0, 3, "inactive"),
        (10, 12.0, 3, "emergent"),
    ]
    assert [(i["difficulty"], i["accuracy"], i["unmodified"]) for i in cell["interventions"]] == [
        ("easy", 0.9, None),  # no unmodified easy row in this table
        ("hard", 0.2, 0.5),
    ]
    assert data["runs"]["sft"]["cells"]["a0.h0"]["interventions"] == []
    assert data["runs"]["sft"]["final"]["a1.h0"] == "emergent" and data["runs"]["sft"]["cohort"]["a1.h0"]["cohort_step"] == 10
    assert data["runs"]["grpo"]["cohort"] == {}
    assert data["runs"]["sft"]["colour"] == run_palette(["sft", "grpo"])["sft"] != data["runs"]["grpo"]["colour"]


def test_explorer_is_self_contained():
    fragment = explorer_html(explorer_tables(), ["sft", "grpo"], ORDER)
    assert "http://" not in fragment and "https://" not in fragment and "src=" not in fragment
    assert fragment.count("<script") == 2 and 'id="explorer-data"' in fragment


def trust_tables() -> dict[str, pl.DataFrame]:
    """Two replicates of a planted run: a1.h0 called at step 10 in both; the null calls nothing."""
    runs, rows = ("p-s0", "p-s1"), []
    for run in runs:
        for step in (0, 10):
            for layer, head in ((0, 0), (1, 0)):
                hit = step == 10 and (layer, head) == (1, 0)
                rows.append((run, step, layer, head, hit, 0.9 if hit else 0.0, 0.2 if hit else 0.0, 0.1, 0.3))
    stability = pl.DataFrame(
        rows,
        schema=["run", "step", "layer", "head", "called", "p_change", "effect_change", "change_low", "change_high"],
        orient="row",
    )
    return {
        "stability": stability,
        "cohorts": pl.DataFrame(
            {"run": list(runs), "layer": [1, 1], "head": [0, 0], "status": ["emergent", "transient"], "cohort_step": [10, 10]}
        ),
        "null_calls": pl.DataFrame({"run": [r for r in runs for _ in range(4)], "step": [0, 0, 10, 10] * 2, "n_called": [0] * 8}),
        "agreement": pl.DataFrame(
            {
                "run": list(runs),
                "step": [10, 10],
                "pearson": [0.9, 0.8],
                "spearman": [0.5, 0.7],
                "top_k": [2, 2],
                "top_k_overlap": [1.0, 0.5],
            }
        ),
        "planted": pl.DataFrame(
            {
                "run": list(runs),
                "detector": ["emergence_test"] * 2,
                "precision": [1.0, 0.5],
                "recall": [0.5, 0.5],
                "detected": ["a1.h0", "a1.h0 a0.h0"],
                "planted": ["a1.h0 a2.h1"] * 2,
            }
        ),
        "circuit_rules": pl.DataFrame(
            {
                "run": ["p-s0"] * 4,
                "rule": ["top_n", "top_n", "faithfulness", "faithfulness"],
                "step": [0, 10, 0, 10],
                "n_edges": [40, 40, 82, 165],
                "called": ["", "a1.h0", "", ""],
            }
        ),
    }


def test_trust_section_reads_the_tables():
    from sparks.plot.trust import trust_section
    from sparks.registry import EMERGENCE_RULE

    text = html.unescape(trust_section({"p": ["p-s0", "p-s1"]}, trust_tables(), shams=["p"]))
    assert EMERGENCE_RULE in text
    assert "the test called a1.h0 (emergent) in p-s0, a1.h0 (transient) in p-s1" in text
    assert "it calls 1.00 [1.00, 1.00] heads per checkpoint and replicate" in text  # one call at the one later step
    assert "the null 0.00" in text and "more often than its null (difference 1.00 [1.00, 1.00] over replicates)" in text
    assert "Sham run p" in text and "every one a false emergence" in text
    assert "0.75 [0.00, 1.00]" in text  # precision over the two replicates: mean and t interval, clipped to a share's range
    assert "1 call(s) change with the rule" in text and "82, 165 edges" in text
    assert "Spearman 0.60" in text
    assert "EAP-IG against exact effects at each checkpoint (p)" in text  # per checkpoint, each replicate
    tables = trust_tables()
    tables["stability"] = tables["stability"].with_columns(pl.col("called") & (pl.col("run") == "p-s0"))  # one replicate calls
    text = html.unescape(trust_section({"p": ["p-s0", "p-s1"]}, tables))
    assert "it calls 0.50 [0.00, 6.85] heads per checkpoint" in text  # a count's interval stops at zero
    assert "the difference 0.50 [-5.85, 6.85] allows none: inconclusive" in text
