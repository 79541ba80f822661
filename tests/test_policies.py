"""A head-policy run against its plain run (sparks.aggregate.policies) on hand-made failures and
cohorts tables: the estimates' signs, the hypotheses' verdicts, the heads text, the refusals,
the table's schema, the command and the report's section."""

from __future__ import annotations

import polars as pl
import pytest
from conftest import commands

from sparks.aggregate.policies import combined, policy_comparison_stage, policy_comparison_table
from sparks.tables import read_table, validate, with_provenance, write_table

ORDER = ["easy", "medium", "hard"]
CODES = {"c": "correct", "x": "calculation_error", "n": "no_trace", "w": "wrong_plan"}
# the plain run's final checkpoint, per replicate: 20 problems per difficulty, one sample each
PLAIN = {
    "easy": ["c" * 18 + "ww", "c" * 17 + "www", "c" * 18 + "wn"],
    "medium": ["c" * 14 + "xxxwwn", "c" * 13 + "xxxxwwn", "c" * 15 + "xxwwn"],
    "hard": ["c" * 8 + "x" * 10 + "nw", "c" * 7 + "x" * 11 + "nw", "c" * 9 + "x" * 9 + "nn"],
}


def failures(outcomes: dict[str, str], step: int = 30) -> pl.DataFrame:
    """A replicate's failures table: per difficulty one sample per problem at the final ``step``
    (a code per problem, CODES), every sample wrong at step 0 and in an intervention, so that
    only the final checkpoint's eval samples can make a difference."""
    rows = []
    for i, (difficulty, codes) in enumerate(outcomes.items()):
        for j, code in enumerate(codes):
            for at, origin, category in ((0, "eval", "wrong_plan"), (step, "eval", CODES[code]), (step, "intervention", "loop")):
                rows.append((at, origin, difficulty, 100 * i + j, category))
    table = pl.DataFrame(
        rows, schema={"step": pl.Int64, "origin": pl.String, "difficulty": pl.String, "sample_id": pl.Int64, "category": pl.String},
        orient="row",
    )  # fmt: skip
    intervened = pl.col("origin") == "intervention"
    return table.with_columns(
        pl.when(intervened).then(pl.lit("ablate")).alias("kind"),
        pl.when(intervened).then(pl.lit("emergent")).alias("heads_from"),
        pl.lit(None, pl.Int64).alias("seed"),
        pl.lit(None, pl.Float64).alias("alpha"),
        pl.lit(0, pl.Int64).alias("k"),
        (pl.col("category") == "correct").alias("correct"),
        pl.lit(3, pl.Int64).alias("n_steps"),
        pl.lit(20, pl.Int64).alias("n_tokens"),
        pl.lit(None, pl.Int64).alias("first_bad_step"),
        pl.lit(None, pl.String).alias("bad_step"),
        pl.lit(False).alias("answer_abandoned"),
    )


def replicates(change: dict[str, list[str]] | None = None) -> list[pl.DataFrame]:
    """Three replicates' failures tables: the plain run's outcomes, with ``change`` replacing a difficulty's."""
    merged = PLAIN | (change or {})
    assert {len(codes) for tier in merged.values() for codes in tier} == {20}
    return [failures({d: merged[d][r] for d in ORDER}) for r in range(3)]


def cohorts(*emergent: tuple[int, int]) -> pl.DataFrame:
    """A replicate's cohorts table: the ``emergent`` heads, and a maintained a0.h0."""
    heads = [(0, 0, None, "maintained"), *[(layer, head, 10, "emergent") for layer, head in emergent]]
    table = pl.DataFrame(
        heads, schema={"layer": pl.Int64, "head": pl.Int64, "cohort_step": pl.Int64, "status": pl.String}, orient="row"
    )
    return table.with_columns(
        pl.lit(0, pl.Int64).alias("first_step"),
        pl.lit(30, pl.Int64).alias("last_step"),
        pl.lit(4, pl.Int64).alias("active_steps"),
    )


POLICY_HEADS = [cohorts((1, 1), (3, 6)), cohorts((1, 1)), cohorts()]
PLAIN_HEADS = [cohorts((2, 0))] * 3


def compare(policy: list[pl.DataFrame], plain: list[pl.DataFrame] | None = None, order: list[str] = ORDER) -> pl.DataFrame:
    plain = replicates() if plain is None else plain
    return policy_comparison_table(policy, plain, POLICY_HEADS, PLAIN_HEADS, order, policy_text="freeze a1.h1", plain_run="sft")


def row(table: pl.DataFrame, name: str) -> dict:
    return table.filter(pl.col("name") == name).row(0, named=True)


def test_a_policy_that_lowers_hard_calculation_errors_reproduces_h1():
    fewer = {"hard": ["c" * 15 + "x" * 3 + "nw", "c" * 16 + "x" * 2 + "nw", "c" * 14 + "x" * 4 + "nn"]}  # 7 calc errors fixed
    table = compare(replicates(fewer))
    change = row(table, "calculation_error_hard")  # policy minus plain: negative
    assert change["value"] == pytest.approx(-7 / 20) and change["high"] < 0 and change["kind"] == "calculation_error"
    assert row(table, "accuracy_hard")["value"] == pytest.approx(7 / 20)
    assert row(table, "accuracy_all")["value"] == pytest.approx(7 / 60)  # every difficulty's problems together
    h1 = row(table, "H1")  # plain minus policy: positive supports it
    assert h1["value"] == pytest.approx(7 / 20) and h1["low"] > 0 and h1["verdict"] == "reproduced"
    assert h1["difficulty"] == "hard" and h1["p_adjusted"] >= h1["p_value"]
    assert row(table, "H3")["verdict"] == "reproduced"
    h2 = row(table, "H2")  # medium unchanged: a loss is not excluded
    assert h2["difficulty"] == "medium" and h2["verdict"] == "inconclusive" and "lower end of the interval +0.000" in h2["detail"]
    both = row(table, "combined")
    assert both["verdict"] == "reproduced" and both["detail"] == "H1 reproduced, H2 inconclusive"
    assert row(table, "no_trace_hard")["value"] == pytest.approx(0.0)
    assert "final checkpoints: policy step 30, plain 30" in row(table, "accuracy_hard")["detail"]


def test_a_policy_equal_to_plain_is_inconclusive_everywhere():
    table = compare(replicates())
    hypotheses = table.filter(pl.col("kind") == "hypothesis")
    assert hypotheses["name"].to_list() == ["H1", "H2", "H3", "combined"]
    assert hypotheses["verdict"].to_list() == ["inconclusive"] * 4
    changes = table.filter(pl.col("kind").is_in(["accuracy", "calculation_error", "no_trace"]))
    assert changes["value"].to_list() == [0.0] * changes.height
    assert changes["p_value"].to_list() == [1.0] * changes.height  # two-sided: no difference at all
    assert table.filter(pl.col("kind") != "hypothesis")["verdict"].null_count() == table.height - 4


def test_a_policy_that_drops_medium_accuracy_contradicts_h2_and_the_hypothesis():
    worse = {
        "medium": ["c" * 6 + "x" * 11 + "wwn", "c" * 5 + "x" * 12 + "wwn", "c" * 7 + "x" * 10 + "wwn"],
        "hard": ["c" * 15 + "x" * 3 + "nw", "c" * 16 + "x" * 2 + "nw", "c" * 14 + "x" * 4 + "nn"],
    }
    table = compare(replicates(worse))
    h2 = row(table, "H2")
    assert h2["value"] == pytest.approx(-8 / 20) and h2["verdict"] == "contradicted"
    assert "the interval lies below zero: a loss of" in h2["detail"]
    assert row(table, "H1")["verdict"] == "reproduced"  # it does lower hard calculation errors, at a price
    assert row(table, "combined")["verdict"] == "contradicted"


def test_h2_inconclusive_reports_the_loss_it_cannot_exclude():
    slightly = {"medium": ["c" * 12 + "xxxxxwwn", PLAIN["medium"][1], "c" * 16 + "xwwn"]}  # -2, 0, +1 problems
    h2 = row(compare(replicates(slightly)), "H2")
    assert h2["value"] == pytest.approx(-1 / 60) and h2["low"] < 0 < h2["high"] and h2["verdict"] == "inconclusive"
    assert f"lower end of the interval {h2['low']:+.3f}: the data cannot exclude a loss down to it" in h2["detail"]


def test_the_combined_rule():
    assert combined("reproduced", "reproduced")["verdict"] == "reproduced"
    assert combined("reproduced", "contradicted")["verdict"] == "contradicted"
    assert combined("contradicted", "reproduced")["verdict"] == "contradicted"
    assert combined("inconclusive", "reproduced")["verdict"] == "inconclusive"
    assert combined("reproduced", "not testable here")["verdict"] == "not testable here"


def test_heads_text_counts_replicates():
    table = compare(replicates())
    policy, plain = row(table, "heads_policy"), row(table, "heads_plain")
    assert policy["detail"] == "a1.h1 (2/3), a3.h6 (1/3)" and policy["value"] == pytest.approx(1.0)
    assert plain["detail"] == "a2.h0 (3/3)" and plain["n_replicates"] == 3
    none = policy_comparison_table(replicates(), replicates(), [cohorts()] * 3, [cohorts()] * 3, ORDER)
    assert row(none, "heads_policy")["detail"] == "none"


def test_fewer_difficulties_leave_h2_untestable_and_one_all_row():
    hub = [failures({"all": PLAIN["hard"][r]}) for r in range(3)]
    table = compare(hub, hub, ["all"])
    assert table.filter(pl.col("kind") == "accuracy")["name"].to_list() == ["accuracy_all"]  # a hub task's one difficulty
    assert row(table, "H2")["verdict"] == "not testable here" and row(table, "combined")["verdict"] == "not testable here"


def test_mismatched_or_mixed_replicates_are_refused():
    with pytest.raises(ValueError, match="pairs replicates by position"):
        policy_comparison_table(replicates()[:2], replicates(), POLICY_HEADS, PLAIN_HEADS, ORDER)
    with pytest.raises(ValueError, match="pairs replicates by position"):
        policy_comparison_table(replicates(), replicates(), POLICY_HEADS[:2], PLAIN_HEADS, ORDER)
    named = [t.with_columns(pl.lit(f"x-s{i}").alias("run")) for i, t in enumerate(replicates())]
    heads = [t.with_columns(pl.lit(f"x-s{(i + 1) % 3}").alias("run")) for i, t in enumerate(POLICY_HEADS)]
    with pytest.raises(ValueError, match="one run's tables at each position"):
        policy_comparison_table(named, replicates(), heads, PLAIN_HEADS, ORDER)


def test_the_table_validates_against_its_schema():
    table = with_provenance(
        compare(replicates()), experiment="e", run="sftfreeze", step=None, task="arith", model_hash=None, config_hash="c"
    )
    validated = validate(table, "policy_comparison")
    assert validated.height == 4 + 2 * 3 + 2 + 4  # accuracy per difficulty and all, two shares, heads, hypotheses
    assert set(validated["kind"]) == {"accuracy", "calculation_error", "no_trace", "heads", "hypothesis"}
    assert validated["policy"].unique().to_list() == ["freeze a1.h1"] and validated["plain"].unique().to_list() == ["sft"]


def config() -> dict:
    """An expanded config with a replicated policy run compared with a replicated plain run."""
    seeds = (0, 1, 2)
    policy = {"freeze": {"calculation_heads": 2}, "compare_to": "sft"}
    runs = {f"sftfreeze-s{s}": {"task": "arith", "heads": policy, "replicate_of": "sftfreeze"} for s in seeds}
    runs |= {f"sft-s{s}": {"task": "arith", "heads": None, "replicate_of": "sft"} for s in seeds}
    groups = {name: [f"{name}-s{s}" for s in seeds] for name in ("sftfreeze", "sft")}
    sections = {"attribute": {}, "aggregate": {}, "evaluate": {}, "failures": {}}
    tasks = {"arith": {"source": "synthetic", "difficulties": ORDER}}
    return {"experiment": "e", "runs": runs, "replicates": groups, "claim_groups": groups, "tasks": tasks, **sections}


def write_inputs(tmp_path, plain_runs=("sft-s0", "sft-s1", "sft-s2")) -> dict[str, list]:
    files: dict[str, list] = {}
    for side, runs, samples, heads in (
        ("policy", [f"sftfreeze-s{s}" for s in range(3)], replicates(), POLICY_HEADS),
        ("plain", plain_runs, replicates(), PLAIN_HEADS),
    ):
        for name, tables in (("failures", samples), ("cohorts", heads)):
            files[f"{side}_{name}"] = []
            for run, table in zip(runs, tables):
                provenance = {"experiment": "e", "run": run, "task": "arith", "model_hash": None, "config_hash": "c"}
                path = tmp_path / f"{run}_{name}.parquet"
                if name == "failures":
                    write_table(
                        with_provenance(table.drop("step"), step=None, **provenance).with_columns(table["step"]), name, path
                    )
                else:
                    write_table(with_provenance(table, step=None, **provenance), name, path)
                files[f"{side}_{name}"].append(path)
    return files


def test_the_stage_writes_the_table_and_checks_the_runs(tmp_path):
    out = policy_comparison_stage(config(), "sftfreeze", "arith", write_inputs(tmp_path), tmp_path / "out.parquet")
    table = read_table(out, "policy_comparison")
    assert table["run"].unique().to_list() == ["sftfreeze"] and table["plain"].unique().to_list() == ["sft"]
    assert table["policy"].unique().to_list() == ["freeze calculation_heads: 2"]
    swapped = write_inputs(tmp_path, ("sft-s1", "sft-s0", "sft-s2"))  # the plain replicates out of seed order
    with pytest.raises(ValueError, match="not 'sft-s0'"):
        policy_comparison_stage(config(), "sftfreeze", "arith", swapped, tmp_path / "bad.parquet")
    short = write_inputs(tmp_path) | {"plain_cohorts": swapped["plain_cohorts"][:2]}
    with pytest.raises(ValueError, match="one file per replicate"):
        policy_comparison_stage(config(), "sftfreeze", "arith", short, tmp_path / "bad.parquet")
    assert not (tmp_path / "bad.parquet").exists()


def test_the_command_takes_the_rules_flags(tmp_path, monkeypatch):
    files = write_inputs(tmp_path)
    argv = ["--run", "sftfreeze", "--task", "arith", "--out", str(tmp_path / "cli.parquet")]
    for name, paths in files.items():
        argv += [f"--{name.replace('_', '-')}", *map(str, paths)]
    args = commands()["policy-comparison"].parse_args(argv)
    monkeypatch.setattr("sparks.aggregate.cli.read_common", lambda args: config())
    args.func(args)
    assert read_table(tmp_path / "cli.parquet", "policy_comparison").height == 16


def test_the_report_renders_the_policies_and_takes_none():
    from sparks.plot.report import policy_section

    table = compare(replicates()).with_columns(pl.lit("sftfreeze").alias("run"))
    text = policy_section(table, ORDER)
    assert 'id="policies"' in text and "sftfreeze: freeze a1.h1, against sft" in text
    assert text.index(">easy<") < text.index(">medium<") < text.index(">hard<") < text.index(">all<")
    assert "a1.h1 (2/3), a3.h6 (1/3)" in text and "a2.h0 (3/3)" in text
    assert text.count('class="verdict-inconclusive"') == 4 and "+0.000 [0.000, 0.000]" in text
    assert policy_section(None, ORDER) == "" and policy_section(table.clear(), ORDER) == ""
    report = commands()["report"]
    argv = [x for a in report._actions if a.required for x in (a.option_strings[0], "f")]
    assert report.parse_args(argv).policy_comparison is None  # a config without a head-policy run
    assert report.parse_args([*argv, "--policy-comparison"]).policy_comparison == []
