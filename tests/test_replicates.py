"""Replicates (runs.<name>.seeds): the config's expansion, the cross-replicate tables on hand-made
replicates (exact values), the claims' verdicts, and a scaled-down replicated DAG run twice in two
folders (identical tables; replicates that really differ)."""

from __future__ import annotations

import copy
import math
import re
import shutil
from pathlib import Path

import polars as pl
import pytest
import yaml
from conftest import REPO, snakemake
from safetensors.torch import load_file
from test_head_training import assert_restricted

from sparks.aggregate.claims import CONTRADICTED, INCONCLUSIVE, REPRODUCED, UNTESTABLE, VERDICTS, adjust, claims_table
from sparks.aggregate.replicates import (
    accuracy_table,
    count_table,
    head_table,
    jaccard_table,
    reward_table,
    timing_table,
)
from sparks.config import ConfigError, check_config
from sparks.manifest import read_manifest
from sparks.stats import mean_interval, t_quantile
from sparks.tables import read_table
from sparks.types import HeadId

SEEDS = {"sft-s0": 0, "sft-s1": 1, "sft-s2": 2}


def test_seeds_expand_into_one_run_per_replicate(raw_config):
    raw_config["runs"]["sft"]["seeds"] = [0, 1, 2]
    config = check_config(raw_config)
    assert config["replicates"] == {"sft": ["sft-s0", "sft-s1", "sft-s2"]}
    assert [n for n in config["runs"] if n.startswith("sft")] == ["sft-s0", "sft-s1", "sft-s2"]
    assert [config["runs"][n]["seed"] for n in config["replicates"]["sft"]] == [0, 1, 2]
    assert {config["runs"][n]["replicate_of"] for n in config["replicates"]["sft"]} == {"sft"}
    assert config["runs"]["grpo"]["replicate_of"] is None  # unreplicated runs keep their name
    for name in config["replicates"]["sft"]:  # otherwise the same run
        assert {k: v for k, v in config["runs"][name].items() if k != "seed"} == {
            k: v for k, v in config["runs"]["sft-s0"].items() if k != "seed"
        }


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"seeds": [0, 1], "seed": 3}, "sets both seed and seeds"),
        ({"seeds": [4]}, "runs.sft.seeds"),  # one seed is not a replicate
        ({"seeds": [1, 1]}, "runs.sft.seeds"),
        ({"method": "models", "checkpoints": "/nowhere", "seeds": [0, 1]}, "trains nothing to replicate"),
    ],
)
def test_bad_seeds_are_refused_naming_the_key(raw_config, edit, message):
    raw_config["runs"]["sft"].update(edit)
    with pytest.raises(ConfigError, match=message):
        check_config(raw_config)


def test_t_quantiles_and_intervals():
    assert t_quantile(1) == 12.706 and t_quantile(2) == 4.303 and t_quantile(25) == 2.086 and t_quantile(5000) == 1.96
    mean, low, high = mean_interval([1, 2, 3])
    assert mean == 2 and math.isclose(high - mean, 4.303 / math.sqrt(3)) and math.isclose(mean - low, high - mean)
    assert mean_interval([0.5]) == (0.5, None, None)
    assert mean_interval([0.5], 0.1) == pytest.approx((0.5, 0.5 - 0.196, 0.5 + 0.196))  # one run: its sampling error
    assert mean_interval([]) == (None, None, None)


def cohorts(rows: list[tuple[int, int, str, int]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows, schema={"layer": pl.Int64, "head": pl.Int64, "status": pl.String, "cohort_step": pl.Int64}, orient="row"
    )


def frequency(active: dict[tuple[int, int], float]) -> pl.DataFrame:
    """Every head of a 2 x 2 model, as the frequency table lists them."""
    rows = [(layer, head, active.get((layer, head), 0.0)) for layer in range(2) for head in range(2)]
    return pl.DataFrame(rows, schema={"layer": pl.Int64, "head": pl.Int64, "frequency": pl.Float64}, orient="row")


@pytest.fixture
def heads() -> pl.DataFrame:
    # a0.h1 emergent in 2 of 3 (robust), a1.h0 in 1 of 3, a0.h0 maintained everywhere; s2 loses a1.h1
    table = {
        "sft-s0": cohorts([(0, 0, "maintained", 0), (0, 1, "emergent", 20), (1, 0, "emergent", 40)]),
        "sft-s1": cohorts([(0, 0, "maintained", 0), (0, 1, "emergent", 40)]),
        "sft-s2": cohorts([(0, 0, "maintained", 0), (1, 1, "lost", 0)]),
    }
    freq = {
        "sft-s0": frequency({(0, 0): 1.0, (0, 1): 0.75, (1, 0): 0.5}),
        "sft-s1": frequency({(0, 0): 1.0, (0, 1): 0.5}),
        "sft-s2": frequency({(0, 0): 1.0, (1, 1): 0.25}),
    }
    return head_table(table, freq, SEEDS, robust_share=0.66)


def test_head_table_shares_and_the_robust_set(heads):
    assert heads.height == 3 * 4  # every replicate x every head
    per_head = {(r["layer"], r["head"]): r for r in heads.filter(pl.col("replicate") == "sft-s0").iter_rows(named=True)}
    assert per_head[0, 1]["emergent_in"] == 2 and math.isclose(per_head[0, 1]["share"], 2 / 3) and per_head[0, 1]["robust"]
    assert per_head[1, 0]["emergent_in"] == 1 and not per_head[1, 0]["robust"]
    assert per_head[0, 0]["emergent_in"] == 0 and not per_head[0, 0]["robust"]
    s2 = {(r["layer"], r["head"]): r for r in heads.filter(pl.col("replicate") == "sft-s2").iter_rows(named=True)}
    assert s2[0, 1]["status"] is None and s2[0, 1]["frequency"] == 0.0 and s2[0, 1]["cohort_step"] is None
    assert s2[1, 1]["status"] == "lost"
    strict = head_table(
        {
            n: heads.filter(pl.col("replicate") == n).drop_nulls("status").select("layer", "head", "status", "cohort_step")
            for n in SEEDS
        },
        {n: heads.filter(pl.col("replicate") == n).select("layer", "head", "frequency") for n in SEEDS},
        SEEDS,
        robust_share=1.0,
    )
    assert not strict["robust"].any()  # 2 of 3 is not all


def test_jaccard_and_counts_over_replicates(heads):
    jaccard = {(r["replicate_a"], r["replicate_b"]): r for r in jaccard_table(heads).iter_rows(named=True)}
    assert jaccard["sft-s0", "sft-s1"]["jaccard"] == 0.5 and jaccard["sft-s0", "sft-s1"]["n_shared"] == 1
    assert jaccard["sft-s0", "sft-s2"]["jaccard"] == 0.0
    assert jaccard["sft-s1", "sft-s2"]["n_b"] == 0
    empty = heads.with_columns(pl.lit(False).alias("emergent"))
    assert jaccard_table(empty)["jaccard"].null_count() == 3  # nothing to agree on
    table = count_table(heads)
    counts = {r["status"]: r for r in table.filter(pl.col("layer").is_null()).iter_rows(named=True)}
    by_layer = {(r["status"], r["layer"]): r["counts"] for r in table.drop_nulls("layer").iter_rows(named=True)}
    assert by_layer["emergent", 0] == [1, 1, 0] and by_layer["emergent", 1] == [1, 0, 0] and by_layer["lost", 1] == [0, 0, 1]
    assert counts["emergent"]["counts"] == [2, 1, 0] and counts["emergent"]["mean"] == 1.0
    assert math.isclose(counts["emergent"]["high"], 1 + 4.303 / math.sqrt(3))
    assert counts["maintained"]["counts"] == [1, 1, 1] and counts["maintained"]["low"] == counts["maintained"]["high"] == 1
    assert counts["lost"]["counts"] == [0, 0, 1]


def test_cohort_timing_per_replicate(heads):
    timing = {r["replicate"]: r for r in timing_table(heads).iter_rows(named=True)}
    assert timing["sft-s0"]["n_emergent"] == 2 and timing["sft-s0"]["first_cohort_step"] == 20
    assert timing["sft-s0"]["median_cohort_step"] == 30 and timing["sft-s0"]["last_cohort_step"] == 40
    assert timing["sft-s2"]["n_emergent"] == 0 and timing["sft-s2"]["first_cohort_step"] is None


def test_base_replicates_compare_no_head_identities(heads):
    per_replicate = {n: heads.filter(pl.col("replicate") == n) for n in SEEDS}
    on_bases = head_table(
        {n: t.drop_nulls("status").select("layer", "head", "status", "cohort_step") for n, t in per_replicate.items()},
        {n: t.select("layer", "head", "frequency") for n, t in per_replicate.items()},
        SEEDS,
        robust_share=0.66,
        same_base=False,
    )
    assert on_bases["share"].null_count() == on_bases["robust"].null_count() == on_bases.height
    assert on_bases["emergent"].to_list() == heads["emergent"].to_list()  # each replicate's own statuses stay
    assert jaccard_table(on_bases).is_empty()
    assert count_table(on_bases).equals(count_table(heads))  # counts and layers compare across bases
    claims = claims_table(
        "sft",
        on_bases,
        reward_table({"a": emergence([0, 1], [None, None])}),
        {"a": samples({(0, "easy"): [1, 0]})},
        None,
        ["easy"],
    )
    assert "not compared across bases" in claims.filter(pl.col("claim") == "stable_heads")["detail"].item()


def test_base_seeds_expand_runs_and_bases(raw_config):
    from sparks.config import base_role, base_roles, model_section

    raw_config["base"]["seeds"] = [0, 1]
    config = check_config(raw_config)
    assert config["replicates"] == {name: [f"{name}-b0", f"{name}-b1"] for name in ("sft", "grpo", "distill")}
    assert base_roles(config) == ["base-b0", "base-b1"] and base_role(config, "grpo-b1") == "base-b1"
    assert model_section(config, "base-b1") == (config["base"], 1) and model_section(config, "teacher") == (config["teacher"], 0)
    with pytest.raises(ValueError, match="base-b7"):
        model_section(config, "base-b7")
    both = copy.deepcopy(raw_config)
    both["runs"]["sft"]["seeds"] = [0, 1]
    with pytest.raises(ConfigError, match="either"):
        check_config(both)
    hub = copy.deepcopy(raw_config)
    hub["base"]["source"] = "Qwen/Qwen2.5-0.5B"
    with pytest.raises(ConfigError, match="base.seeds"):
        check_config(hub)


def emergence(active: list[int], reward: list[float | None]) -> pl.DataFrame:
    return pl.DataFrame({"step": [10 * (i + 1) for i in range(len(active))], "emergent_active": active, "reward": reward})


def test_reward_tracking_is_on_fluctuations_pooled_over_replicates():
    import numpy as np

    tables = {"a": emergence([0, 1, 2, 3], [0.1, 0.2, 0.4, 0.5]), "b": emergence([0, 0, 1, 2], [0.2, 0.1, 0.3, 0.6])}
    row = reward_table(tables, min_points=5).row(0, named=True)
    dx, dy = [1, 1, 1, 0, 1, 1], [0.1, 0.2, 0.1, -0.1, 0.2, 0.3]  # first differences, replicate by replicate
    assert row["n_points"] == 6 and math.isclose(row["pooled_r"], np.corrcoef(dx, dy)[0, 1])
    assert row["pooled_low"] <= row["pooled_r"] <= row["pooled_high"]  # block bootstrap over checkpoints
    assert row == reward_table(tables, min_points=5).row(0, named=True)  # seeded: the same interval again
    assert math.isclose(row["replicate_r"][1], np.corrcoef([0, 1, 1], [-0.1, 0.2, 0.3])[0, 1])
    assert row["replicate_r"][0] is None  # replicate a's head count rises by one at every checkpoint: no spread
    trend = {"a": emergence([0, 1, 2, 3, 4, 5, 6], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])}  # both rise steadily
    assert reward_table(trend).row(0, named=True)["pooled_r"] is None  # a shared trend is not tracking
    too_few = reward_table(tables, min_points=7).row(0, named=True)
    assert too_few["n_points"] == 6 and too_few["pooled_r"] is None
    none = reward_table({"a": emergence([0, 1], [None, None])}).row(0, named=True)
    assert none["n_points"] == 0 and none["pooled_r"] is None


def test_block_bootstrap_keeps_neighbours_together():
    from sparks.aggregate.replicates import block_bootstrap_r

    x = [0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0]
    low, high = block_bootstrap_r([(x, [2 * v for v in x])], resamples=200, seed=0)
    assert low == high == 1.0  # perfectly related changes: every resample says so
    assert block_bootstrap_r([([1.0, 1.0, 1.0], [0.0, 1.0, 2.0])], resamples=50, seed=0) == (None, None)  # no spread


def samples(correct: dict[tuple[int, str], list[int]], origin: str = "eval", **columns) -> pl.DataFrame:
    """Eval samples (or failures rows): per (step, difficulty) one sample per problem, correct or not."""
    rows = [(step, d, i, bool(c)) for (step, d), values in correct.items() for i, c in enumerate(values)]
    table = pl.DataFrame(
        rows, schema={"step": pl.Int64, "difficulty": pl.String, "sample_id": pl.Int64, "correct": pl.Boolean}, orient="row"
    )
    extra = {"origin": origin, "kind": None, "heads_from": None, "seed": None, "alpha": None, "category": None} | columns
    return table.with_columns(pl.lit(v).alias(k) for k, v in extra.items()).with_columns(
        pl.col("seed").cast(pl.Int64), pl.col("alpha").cast(pl.Float64), pl.col("kind", "heads_from", "category").cast(pl.String)
    )


def test_accuracy_over_replicates_and_change_from_the_shared_base():
    base = [1, 0, 1, 0, 0, 1, 0, 0, 1, 0]  # 0.4, shared
    tables = {
        "a": samples({(0, "hard"): base, (10, "hard"): [1, 1, 1, 1, 1, 1, 1, 1, 1, 0]}),
        "b": samples({(0, "hard"): base, (10, "hard"): [1, 1, 1, 0, 1, 1, 1, 0, 1, 0]}),
        "c": samples({(0, "hard"): base, (10, "hard"): [1, 1, 1, 1, 0, 1, 1, 1, 1, 0]}),
    }
    final = accuracy_table(tables).filter(pl.col("step") == 10).row(0, named=True)
    assert math.isclose(final["accuracy_mean"], 0.8) and final["accuracy_min"] == 0.7 and final["accuracy_max"] == 0.9
    assert math.isclose(final["change_mean"], 0.4)
    # replicates x problems crossed: the replicates' variance of their mean plus the problems' (module docstring)
    changes = [[f - b for f, b in zip(t.filter(pl.col("step") == 10)["correct"], base)] for t in tables.values()]
    replicate_means = [sum(c) / 10 for c in changes]
    problem_means = [sum(c[i] for c in changes) / 3 for i in range(10)]
    variance = float(pl.Series(replicate_means).var()) / 3 + float(pl.Series(problem_means).var()) / 10
    df = variance**2 / (
        (float(pl.Series(replicate_means).var()) / 3) ** 2 / 2 + (float(pl.Series(problem_means).var()) / 10) ** 2 / 9
    )
    assert math.isclose(final["change_high"] - 0.4, t_quantile(math.floor(df)) * math.sqrt(variance))
    base_row = accuracy_table(tables).filter(pl.col("step") == 0).row(0, named=True)
    assert base_row["change_low"] == base_row["change_high"] == 0  # the shared base minus itself


def test_replicates_that_agree_by_chance_keep_the_problems_error():
    same = {
        name: samples({(0, "hard"): [0, 0, 1, 1, 0, 0, 1, 0, 1, 0], (10, "hard"): [1, 0, 1, 1, 0, 1, 1, 0, 1, 0]})
        for name in "abc"
    }
    final = accuracy_table(same).filter(pl.col("step") == 10).row(0, named=True)
    assert final["change_mean"] == pytest.approx(0.2)  # all three +0.2: no spread between them
    differences = [1, 0, 0, 0, 0, 1, 0, 0, 0, 0]  # paired on problems: two problems gained, none lost
    half = t_quantile(9) * float(pl.Series(differences).std()) / math.sqrt(10)
    assert final["change_low"] == pytest.approx(0.2 - half) and final["change_low"] < 0


def failures(base: list[int], final: list[int], ablated: dict, scaled: dict, calculation: tuple = ()) -> pl.DataFrame:
    """A replicate's failures table on easy and hard problems: eval samples of the base (step 0)
    and the final checkpoint (step 10), then intervention samples (``ablated``, ``scaled``: per
    condition (heads_from, seed, alpha) the correctness of each easy and each hard problem)."""
    parts = [samples({(0, "easy"): base, (0, "hard"): base, (10, "easy"): final, (10, "hard"): final})]
    for kind, conditions in (("ablate", ablated), ("scale", scaled)):
        step = 10 if kind == "ablate" else 0
        for (heads_from, seed, alpha), correct in conditions.items():
            wrong = "calculation_error" if (kind, heads_from) in calculation else "wrong_plan"
            part = samples({(step, "easy"): correct, (step, "hard"): correct}, "intervention", kind=kind, heads_from=heads_from)
            parts.append(
                part.with_columns(
                    pl.lit(seed, pl.Int64).alias("seed"),
                    pl.lit(alpha, pl.Float64).alias("alpha"),
                    pl.when(pl.col("correct")).then(pl.lit("correct")).otherwise(pl.lit(wrong)).alias("category"),
                )
            )
    return pl.concat(parts)


def replicate_failures(final: list[int], emergent: list[int], draws: list[list[int]]) -> pl.DataFrame:
    """Base all wrong; the unmodified models all right; the emergent heads ablated (and scaled up,
    their errors calculation errors) score ``emergent``; the outside control's draws score ``draws``."""
    ones = [1] * 10
    ablated = {("none", None, None): ones, ("emergent", None, None): emergent}
    ablated |= {("outside", seed, None): draw for seed, draw in enumerate(draws)}
    scaled = {("none", None, None): ones, ("emergent", None, 2.0): emergent, ("emergent", None, 0.5): ones}
    scaled |= {("outside", seed, 2.0): draw for seed, draw in enumerate(draws)}
    return failures([0] * 10, final, ablated, scaled, calculation=(("scale", "emergent"),))


def test_claims_and_their_verdicts(heads):
    reward = reward_table(  # heads come and go with the reward's ups and downs
        {"a": emergence([0, 2, 1, 3], [0.1, 0.4, 0.2, 0.6]), "b": emergence([1, 0, 2, 1], [0.3, 0.1, 0.5, 0.4])}
    )
    tables = {
        "a": replicate_failures([1] * 9 + [0], [0] * 7 + [1] * 3, [[1] * 10, [1] * 9 + [0]]),
        "b": replicate_failures([1] * 8 + [0] * 2, [0] * 6 + [1] * 4, [[1] * 10, [0] + [1] * 9]),
        "c": replicate_failures([1] * 10, [0] * 8 + [1] * 2, [[1] * 8 + [0] * 2, [1] * 10]),
    }
    table = claims_table("grpo", heads, reward, tables, None, ["easy", "hard"])
    claims = {r["claim"]: r for r in table.iter_rows(named=True)}
    assert list(claims) == [
        "stable_heads",
        "reward_tracking",
        "loss_easy",
        "gain_hard",
        "ablation_cost",
        "ablation_vs_outside",
        "overthinking_easy",
        "overthinking_vs_outside",
        "overthinking_calculation",
        "think_off_broader",
    ]
    assert claims["stable_heads"]["verdict"] == INCONCLUSIVE  # 2, 1, 0 emergent heads: the interval reaches zero
    assert "a0.h1 (2/3)" in claims["stable_heads"]["detail"]
    assert claims["reward_tracking"]["verdict"] == REPRODUCED and claims["reward_tracking"]["low"] > 0
    gain = claims["gain_hard"]  # 0.9, 0.8, 1.0 from 0: paired on problems
    assert gain["verdict"] == REPRODUCED and math.isclose(gain["value"], 0.9) and "paired on problems" in gain["statistic"]
    assert gain["detail"] == "base 0.000, final 0.900 (replicates 0.800-1.000)"
    loss = claims["loss_easy"]  # the study expects the easiest tier to lose: here it gained as much, significantly
    assert loss["verdict"] == CONTRADICTED and math.isclose(loss["value"], -0.9)
    assert claims["ablation_cost"]["verdict"] == REPRODUCED and math.isclose(claims["ablation_cost"]["value"], 0.7)
    margin = claims["ablation_vs_outside"]  # the control's accuracy, the mean of its two draws, minus the emergent heads'
    assert math.isclose(margin["value"], ((0.95 - 0.3) + (0.95 - 0.4) + (0.9 - 0.2)) / 3) and margin["verdict"] == REPRODUCED
    assert margin["detail"] == "2 distinct draws of outside heads per replicate"
    assert claims["overthinking_easy"]["verdict"] == REPRODUCED and math.isclose(claims["overthinking_easy"]["value"], 0.7)
    assert claims["overthinking_easy"]["detail"] == "alpha 2"  # the largest alpha above 1; 0.5 is not over-thinking
    assert math.isclose(claims["overthinking_vs_outside"]["value"], margin["value"])
    calculation = claims["overthinking_calculation"]  # every error of the scaled-up heads is a calculation error
    assert calculation["verdict"] == REPRODUCED and math.isclose(calculation["value"], 0.7)
    assert claims["think_off_broader"]["verdict"] == UNTESTABLE
    for row in claims.values():  # the p-value and the interval agree, one t
        if row["p_value"] is not None and row["claim"] != "reward_tracking":
            assert (row["p_value"] < 0.025) == (row["low"] > 0) and (row["p_value"] > 0.975) == (row["high"] < 0)

    def null(final_calls: tuple[int, int]) -> pl.DataFrame:  # the pair-halves null of one replicate: steps 0 and 10
        return pl.DataFrame({"step": [0, 0, 10, 10], "direction": ["a_to_b", "b_to_a"] * 2, "n_called": [5, 5, *final_calls]})

    against = claims_table(
        "grpo",
        heads,
        reward,
        tables,
        None,
        ["easy", "hard"],
        null_calls={"sft-s0": null((1, 1)), "sft-s1": null((0, 1)), "sft-s2": null((0, 0))},
    )
    stay = against.filter(pl.col("claim") == "stable_heads").row(0, named=True)
    assert "minus the pair-halves null's calls at the final checkpoint" in stay["statistic"]
    assert math.isclose(stay["value"], ((2 - 1) + (1 - 0.5) + (0 - 0)) / 3)  # 2, 1, 0 emergent heads against 1, 0.5, 0
    poisson = math.sqrt((2 + 1 + 0 + 1 + 0.5 + 0) / 3)  # the counts' own error is the least spread
    assert math.isclose(stay["high"] - stay["value"], 4.303 * max(poisson, 0.5) / math.sqrt(3), rel_tol=1e-6)
    from sparks.aggregate.claims import _count_sd

    assert _count_sd([0, 0, 0, 0, 0, 0], 3) == math.sqrt(1 / 3)  # three replicates counting nothing: no zero-width interval
    assert _count_sd([2, 1, 0], 3) == 1.0 and _count_sd([4], 1) == 0.0
    alike = {"sft-s0": null((0, 0)), "sft-s1": null((1, 1)), "sft-s2": null((2, 2))}  # 2 - 0, 1 - 1, 0 - 2: all differ
    assert claims_table("grpo", heads, reward, tables, None, ["easy"], null_calls=alike).row(0, named=True)["low"] < 0
    think = {  # think-off-only, think-on-only heads at the last compared checkpoint (10) of each replicate
        f"sft-s{i}": pl.DataFrame({"step": [0, 10], "think_off_only": [0, off], "think_on_only": [0, on]})
        for i, (off, on) in enumerate([(4, 1), (5, 1), (3, 0)])
    }
    halves = {  # the pair-halves null's heads only in the later half's circuit, per direction
        f"sft-s{i}": null((0, 0)).with_columns(n_only=pl.Series([0, 0, *only])) for i, only in enumerate([(1, 0), (0, 2), (1, 1)])
    }
    broader = claims_table("grpo", heads, reward, tables, think, ["easy"], null_calls=halves)
    broader = broader.filter(pl.col("claim") == "think_off_broader").row(0, named=True)
    assert math.isclose(broader["value"], ((3 - 1) + (4 - 2) + (3 - 0)) / 3)  # margins 3, 4, 3 less the null's 1, 2, 0
    assert broader["detail"] == "margins +3, +4, +3; null 1, 2, 0" and "pair-halves null" in broader["statistic"]
    counts = math.sqrt((5 + 6 + 3 + 1 + 2 + 0) / 3)  # the margins' own (Poisson) error is the least spread
    assert math.isclose(broader["high"] - broader["value"], 4.303 * counts / math.sqrt(3), rel_tol=1e-6)
    assert broader["low"] < 0 < broader["p_value"] - 0.025  # 2.33 against a half-width of 5.9: not with three replicates
    nothing = tables["b"].filter(pl.col("heads_from") != "emergent")  # no head to ablate here
    partial = claims_table("grpo", heads, reward, {"a": tables["a"], "b": nothing}, None, ["easy", "hard"])
    cost = partial.filter(pl.col("claim") == "ablation_cost").row(0, named=True)
    assert cost["n_replicates"] == 1 and math.isclose(cost["value"], 0.7)  # only the replicate that ablated counts
    evaluated = {n: t.filter(pl.col("origin") == "eval") for n, t in tables.items()}
    sft = claims_table("sft", heads, reward_table({"a": emergence([0, 1], [None, None])}), evaluated, None, ["easy", "hard"])
    untested = {r["claim"]: r["verdict"] for r in sft.iter_rows(named=True)}
    assert untested["reward_tracking"] == untested["ablation_cost"] == untested["overthinking_easy"] == UNTESTABLE
    assert untested["overthinking_calculation"] == UNTESTABLE


def test_a_single_run_carries_the_draws_spread():
    """One replicate: the problems' error plus the spread between the control's draws (draws that
    disagree widen the control's interval; the emergent heads' own interval does not change)."""
    steady = replicate_failures([1] * 10, [0] * 7 + [1] * 3, [[1] * 10, [1] * 10])
    spread = replicate_failures([1] * 10, [0] * 7 + [1] * 3, [[1] * 10, [0] * 5 + [1] * 5])
    rows = {}
    for name, table in (("steady", steady), ("spread", spread)):
        claims = claims_table(
            "sft", single_heads(), reward_table({"a": emergence([0, 1], [None, None])}), {"r": table}, None, ["easy"]
        )
        rows[name] = {r["claim"]: r for r in claims.iter_rows(named=True)}
    assert rows["steady"]["ablation_cost"]["high"] == rows["spread"]["ablation_cost"]["high"]
    narrow = rows["steady"]["ablation_vs_outside"]["high"] - rows["steady"]["ablation_vs_outside"]["low"]
    wide = rows["spread"]["ablation_vs_outside"]["high"] - rows["spread"]["ablation_vs_outside"]["low"]
    assert wide > 2 * narrow  # draws 1.0 and 0.5: their variance over two draws, with one degree of freedom


def single_heads() -> pl.DataFrame:
    return head_table({"r": cohorts([(0, 1, "emergent", 10)])}, {"r": frequency({(0, 1): 0.5})}, {"r": 0}, robust_share=1.0)


def test_interventions_target_the_robust_set(heads):
    from sparks.evaluate import EvaluateSettings, intervened_heads
    from sparks.types import HeadId

    own = heads.filter(pl.col("replicate") == "sft-s0").drop_nulls("status").select("layer", "head", "status", "cohort_step")
    settings = EvaluateSettings.defaults()
    assert intervened_heads(settings, own, None) == (HeadId(0, 1), HeadId(1, 0))  # the replicate's own
    assert intervened_heads(settings, own, None, heads) == (HeadId(0, 1),)  # the robust set


def replicated_config(base: Path) -> dict:
    """Two replicates each of SFT, GRPO and SFT under a head policy on a given base, a few steps,
    with SFT's circuits also scored on style pairs: wiring, not science."""
    raw = yaml.safe_load((REPO / "workflow_config.yaml").read_text())
    raw.update(experiment="replicated", base={"source": str(base)})
    raw.pop("teacher")
    raw["tasks"]["arith"].update(n_train=64, n_eval=6, n_pairs=8)
    common = {"seeds": [0, 1], "max_steps": 4, "save_steps": 2, "gradient_checkpointing": False, "learning_rate": 0.002}
    raw["runs"] = {
        "sft": {"method": "sft", "batch_size": 8, **common},
        "grpo": {
            "method": "grpo",
            "difficulties": ["medium", "hard"],
            "batch_size": 8,
            "grpo": {"num_generations": 4, "temperature": 1.0, "beta": 0.0, "max_completion_length": 24, "scale_rewards": "none"},
            **common,
        },
        # a head policy: the base's top calculation head frozen, compared with plain sft seed by seed
        "sftfreeze": {
            "method": "sft",
            "batch_size": 8,
            "heads": {"freeze": {"calculation_heads": 1}, "compare_to": "sft"},
            **common,
        },
    }
    raw["attribute"] = {"compare_think_at": "none", "compare_pairs": ["sft"]}  # sft's circuits on style pairs too
    # one intervene job per condition here (the embedded default runs one per run)
    raw["evaluate"] = {
        "n_samples": 2, "k": [1, 2], "alphas": [2.0], "random_seeds": 1, "controls": ["outside"], "split_interventions": True
    }  # fmt: skip
    raw["aggregate"] = {"bootstrap": 5}
    return raw


def frames_equal(a: Path, b: Path, table: str) -> bool:
    drop = ("created_at",)
    return read_table(a, table).drop(drop).equals(read_table(b, table).drop(drop))


@pytest.mark.slow
def test_replicated_runs_through_the_dag_twice(dag_run, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(dag_run / "base", base, ignore=shutil.ignore_patterns("sparks_model.json", "accuracy.parquet"))
    raw = replicated_config(base)
    works = [tmp_path / "one", tmp_path / "two"]
    for work in works:
        work.mkdir()
        (work / "replicated.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))  # difficulties in the task's order
    profile = ("--profile", str(REPO / "profiles" / "local"), "--cores", "2")
    first = snakemake(works[0], *profile, "--configfile", str(works[0] / "replicated.yaml"))
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-5000:]
    # the second folder: one SFT replicate's head tables (data, training, attribution), not the whole DAG again
    targets = [f"results/replicated/heads/sft-s0/{step}/arith.parquet" for step in (0, 2, 4)]
    second = snakemake(works[1], *targets, *profile, "--configfile", str(works[1] / "replicated.yaml"))
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-5000:]
    one, two = (w / "results" / "replicated" for w in works)

    # Two folders, one config and seed: the same tables, head by head.
    heads = sorted((two / "heads").rglob("*.parquet"))
    assert len(heads) == 3 and len(list((one / "heads").rglob("*.parquet"))) == 6 * 3  # replicates x checkpoints 0, 2, 4
    for path in heads:
        assert frames_equal(path, one / path.relative_to(two), "heads"), path

    # Replicates are replicates: one base, different training.
    for group in ("sft", "grpo"):
        runs = [read_manifest(one / "runs" / f"{group}-s{s}" / "checkpoints.json") for s in (0, 1)]
        assert runs[0].model_hash(0) == runs[1].model_hash(0)  # the shared base
        assert runs[0].model_hash(4) != runs[1].model_hash(4)
        logs = [read_table(one / "runs" / f"{group}-s{s}" / "train_log.parquet", "train_log") for s in (0, 1)]
        assert logs[0]["loss"].to_list() != logs[1]["loss"].to_list()

        replicate_heads = read_table(one / "replicates" / group / "arith" / "replicate_heads.parquet", "replicate_heads")
        assert set(replicate_heads["replicate"]) == {f"{group}-s0", f"{group}-s1"} and replicate_heads[
            "n_replicates"
        ].unique().to_list() == [2]
        robust = {f"a{l}.h{h}" for l, h in replicate_heads.filter(pl.col("robust")).select("layer", "head").unique().rows()}
        for s in (0, 1):  # each replicate intervenes on the robust set, not its own emergent heads
            table = read_table(one / "bench" / f"{group}-s{s}" / "interventions" / "arith.parquet", "interventions")
            intervened = table.filter(pl.col("heads_from") == "emergent")["heads"].unique().to_list()
            assert intervened == ([" ".join(sorted(robust, key=lambda h: tuple(map(int, h[1:].split(".h")))))] if robust else [])
        claims = read_table(one / "replicates" / group / "arith" / "replicate_claims.parquet", "replicate_claims")
        assert {"stable_heads", "reward_tracking", "gain_hard", "overthinking_easy", "think_off_broader"} <= set(claims["claim"])
        assert set(claims["verdict"]) <= set(VERDICTS)
        assert claims.filter(pl.col("claim") == "think_off_broader")["verdict"].item() == UNTESTABLE
    parts = sorted(p.name for p in (one / "bench" / "sft-s0" / "interventions" / "parts" / "arith").iterdir())
    assert len(parts) == 2 * 6  # (ablate: none, emergent, outside; scale: none, emergent, outside at alpha 2) x 2 tables
    grpo_reward = read_table(one / "replicates" / "grpo" / "arith" / "replicate_reward.parquet", "replicate_reward")
    assert grpo_reward["n_points"].item() == 2  # 2 checkpoints after the base, so 1 change, x 2 replicates
    assert grpo_reward["pooled_r"].item() is None  # fewer changes than aggregate.min_reward_points: not testable
    report = (one / "report.html").read_text()
    assert (
        "Replicated run sft in detail (task arith): 2 replicates" in report and "The study's claims across replicates" in report
    )
    assert "Computed on" in report and "torch" in report
    section = report[report.index("Replicated run sft in detail") :]
    section = section[: section.index("</details>")]
    headers = re.findall(r"<th>([^<]+)</th>", section)
    assert not {"experiment", "model hash", "config hash", "sparks version", "created at", "machine"} & {
        h.lower() for h in headers
    }
    assert section.count("Tables of experiment") == 1  # provenance once per section
    final = section[section.index("Final accuracy against the shared base") :]
    assert re.findall(r'<td class="txt">(easy|medium|hard)</td>', final) == ["easy", "medium", "hard"]  # easiest first
    assert (one / "figures" / "grpo" / "arith_replicate_heads.png").is_file()

    # The head policy: the base's calculation heads (every head ablated alone), the one frozen, the
    # policy's replicates against plain sft's of the same seed.
    calculation = read_table(one / "calculation_heads" / "base" / "arith.parquet", "calculation_heads")
    assert calculation.filter(pl.col("difficulty") == "all").height == 4 * 8  # every head of the tiny base
    top = calculation.filter((pl.col("difficulty") == "all") & (pl.col("rank") == 1) & (pl.col("calc_rise") > 0))
    policy = read_table(one / "head_policies" / "sftfreeze-s0.parquet", "head_policy")
    assert policy.select("layer", "head").rows() == top.select("layer", "head").rows()  # none if no head raises it
    assert set(policy["policy"]) <= {"freeze"} and set(policy["head_set"]) <= {"calculation_heads: 1"}
    frozen = read_manifest(one / "runs" / "sftfreeze-s0" / "checkpoints.json")
    first, last = (load_file(frozen.checkpoint(step) / "model.safetensors") for step in (0, 4))
    frozen_heads = [HeadId(layer, head).name for layer, head in policy.select("layer", "head").rows()]
    assert_restricted(first, last, frozen_heads, n_heads=8, n_kv=2, train=False)  # frozen slices still, the rest trained
    comparison = read_table(one / "policies" / "sftfreeze" / "arith" / "policy_comparison.parquet", "policy_comparison")
    assert set(comparison["plain"]) == {"sft"} and set(comparison["n_replicates"].drop_nulls()) == {2}
    assert {"accuracy_hard", "calculation_error_hard", "H1", "H2", "H3", "combined"} <= set(comparison["name"])
    assert set(comparison.filter(pl.col("kind") == "hypothesis")["verdict"]) <= set(VERDICTS)
    assert '<h2 id="policies">Head policies</h2>' in report and "sftfreeze" in report

    # sft's checkpoints on style pairs too: which emergence calls the two kinds of pairs agree on.
    for s in (0, 1):
        kinds = read_table(one / "circuits" / f"sft-s{s}" / "arith" / "pair_kinds.parquet", "pair_kinds")
        assert kinds["agree"].to_list() == (kinds["called_operand"] == kinds["called_style"]).to_list()
    assert "Emergence calls on the same checkpoints scored on style pairs" in report


@pytest.mark.slow
def test_base_replicates_through_the_dag(tmp_path):
    raw = yaml.safe_load((REPO / "workflow_config.yaml").read_text())
    raw.update(experiment="bases")
    raw["base"]["seeds"] = [0, 1]
    raw["base"]["pretrain"]["steps"] = 40
    raw.pop("teacher")
    raw["tasks"]["arith"].update(n_train=64, n_eval=6, n_pairs=8)
    raw["runs"] = {"sft": {"method": "sft", "max_steps": 2, "save_steps": 2, "batch_size": 8, "gradient_checkpointing": False}}
    raw["attribute"] = {"compare_think_at": "none"}
    raw["evaluate"] = {"n_samples": 2, "k": [1, 2], "alphas": [2.0], "random_seeds": 1}
    raw["aggregate"] = {"bootstrap": 5}
    (tmp_path / "bases.yaml").write_text(yaml.safe_dump(raw))
    result = snakemake(tmp_path, "--profile", str(REPO / "profiles" / "local"), "--configfile", str(tmp_path / "bases.yaml"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    results = tmp_path / "results" / "bases"
    assert not (results / "base").exists()  # one base per seed, none unnamed
    summary = (results / "report.html").read_text().split("<nav>")[0]  # the answer first: no head compared across bases
    assert "head identities are not compared across bases (counts in the claims)" in summary
    runs = [read_manifest(results / "runs" / f"sft-b{b}" / "checkpoints.json") for b in (0, 1)]
    assert runs[0].model_hash(0) != runs[1].model_hash(0)  # each run starts from its own base
    heads = read_table(results / "replicates" / "sft" / "arith" / "replicate_heads.parquet", "replicate_heads")
    assert heads["robust"].null_count() == heads.height and heads["seed"].unique().sort().to_list() == [0, 1]
    assert read_table(results / "replicates" / "sft" / "arith" / "replicate_jaccard.parquet", "replicate_jaccard").is_empty()
    timing = read_table(results / "replicates" / "sft" / "arith" / "replicate_timing.parquet", "replicate_timing")
    assert timing["replicate"].to_list() == ["sft-b0", "sft-b1"]
    for b in (0, 1):  # each intervenes on its own emergent heads
        own = read_table(results / "circuits" / f"sft-b{b}" / "arith" / "cohorts.parquet", "cohorts").filter(
            pl.col("status") == "emergent"
        )
        table = read_table(results / "bench" / f"sft-b{b}" / "interventions" / "arith.parquet", "interventions")
        intervened = table.filter(pl.col("heads_from") == "emergent")["heads"].unique().to_list()
        expected = " ".join(f"a{l}.h{h}" for l, h in sorted(own.select("layer", "head").rows()))
        assert intervened == ([expected] if expected else [])
    assert "Base replicates" in (results / "report.html").read_text()


def test_four_verdicts_from_holm_adjusted_p_values():
    """A run's claims are one family: Holm in each direction at 2.5 %; significantly the opposite is
    contradicted, never lumped with an interval that holds zero; a capped count stays inconclusive."""

    def row(p, capped=False):
        return {"claim": "c", "p_value": p, "capped": capped}

    rows = adjust([row(0.001), row(0.02), row(0.999), row(0.4), row(None), row(0.0001, capped=True)])
    assert [r["verdict"] for r in rows] == [REPRODUCED, INCONCLUSIVE, CONTRADICTED, INCONCLUSIVE, UNTESTABLE, INCONCLUSIVE]
    assert [r["p_adjusted"] for r in rows][:2] == pytest.approx([0.004, 0.06])  # 4 x 0.001; 3 x 0.02 (0.0001 ranks first)
    assert "capped" not in rows[0] and rows[4]["p_adjusted"] is None
    alone = adjust([row(0.02)])
    assert alone[0]["verdict"] == REPRODUCED and alone[0]["p_adjusted"] == 0.02  # a family of one: no adjustment


def test_p_values_read_back_from_intervals_match_the_verdicts():
    from sparks.stats import holm, interval_p, mean_interval, t_sf

    assert t_sf(4.303, 2) == pytest.approx(0.025, abs=1e-4) and t_sf(1.959964, None) == pytest.approx(0.025, abs=1e-6)
    assert t_sf(-1.0, 5) == pytest.approx(1 - t_sf(1.0, 5)) and t_sf(0.0, 3) == pytest.approx(0.5)
    for values in ([0.1, 0.2, 0.3], [0.05, -0.1, 0.2], [-0.3, -0.2, -0.25], [0.4, 0.41]):
        mean, low, high = mean_interval(values)
        p = interval_p(mean, low, high, len(values))
        assert (p < 0.025) == (low > 0) and (1 - p < 0.025) == (high < 0)  # the interval and the test agree
    adjusted = holm([0.01, 0.04, None, 0.03])
    assert adjusted[2] is None and adjusted[0] == pytest.approx(0.03) and adjusted[1] == adjusted[3] == pytest.approx(0.06)


@pytest.mark.parametrize("n", [1, 3, 5])
def test_intervals_cover_the_truth_and_holm_holds_the_family_rate(n):
    """The machinery on simulated data with known truth: 400 data sets of n replicate values (one
    value: the normal interval of its known error). 95 % intervals cover the true mean in 93-97 %;
    under the null (eleven claims with no effect) Holm keeps the family-wise rate of a false
    'reproduced' at or below 2.5 %, and of any false verdict at or below 5 %."""
    import numpy as np

    from sparks.stats import interval_p, mean_interval

    rng = np.random.default_rng(n)
    sd, truth, covered, false_up, false_any = 0.1, 0.07, 0, 0, 0
    for _ in range(400):
        values = rng.normal(truth, sd, n).tolist()
        mean, low, high = mean_interval(values, floor_sd=sd if n == 1 else 0.0)
        covered += low <= truth <= high
        family = []
        for _ in range(11):
            null = rng.normal(0.0, sd, n).tolist()
            m, lo, hi = mean_interval(null, floor_sd=sd if n == 1 else 0.0)
            family.append({"claim": "c", "p_value": interval_p(m, lo, hi, n)})
        verdicts = [r["verdict"] for r in adjust(family)]
        false_up += REPRODUCED in verdicts
        false_any += REPRODUCED in verdicts or CONTRADICTED in verdicts
    assert 0.93 <= covered / 400 <= 0.97
    assert false_up / 400 <= 0.025 + 0.015 and false_any / 400 <= 0.05 + 0.02  # nominal rates, with simulation error
