"""The calculation_heads table: single-head ablation of the starting model (the evaluate stage's
head-ablations samples), the calculation-error share of its samples per head (the failures
stage), and the selection of the heads whose ablation raises it most."""

from __future__ import annotations

import polars as pl
import pytest

from sparks.config import check_config
from sparks.evaluate import ablations
from sparks.evaluate.ablations import head_ablations_stage
from sparks.failures import calculation
from sparks.failures.calculation import (
    ALL,
    CALCULATION,
    calculation_heads_stage,
    calculation_heads_table,
    calculation_shares,
    rank_heads,
)
from sparks.registry import FAILURE_CATEGORIES
from sparks.tables import read_table, with_provenance, write_table

N_HEADS = 8  # the tiny model: 2 layers x 4 heads
HEAD_NAMES = [f"a{layer}.h{head}" for layer in range(2) for head in range(4)]


@pytest.fixture(scope="module")
def config():
    import yaml
    from conftest import REPO

    raw = yaml.safe_load((REPO / "workflow_config.yaml").read_text())
    raw["tasks"]["arith"].update(n_train=6, n_eval=2, n_pairs=2)  # 2 eval problems per difficulty, 3 difficulties
    raw["evaluate"] = {"n_samples": 1, "k": [1], "max_new_tokens": 6, "batch_size": 8, "temperature": 1.0}
    return check_config(raw)


@pytest.fixture(scope="module")
def problems(tmp_path_factory, config):
    from sparks.data.tasks import synthetic_problems

    table = with_provenance(
        synthetic_problems(config["tasks"]["arith"], config["seed"]),
        experiment=config["experiment"], run=None, step=None, task="arith", model_hash=None, config_hash="c",
    )  # fmt: skip
    return write_table(table, "problems", tmp_path_factory.mktemp("data") / "arith_problems.parquet")


def _recorded_ablations(config, model_dir, problems, out):
    """Run head_ablations_stage, recording every sample_table call it makes as (intervention, samples)."""
    import sparks.evaluate

    calls = []
    original = sparks.evaluate.sample_table

    def recording(*args, **kwargs):
        samples = original(*args, **kwargs)
        calls.append((args[4] if len(args) > 4 else kwargs.get("intervention"), samples))
        return samples

    patch = pytest.MonkeyPatch()
    patch.setattr(sparks.evaluate, "sample_table", recording)
    try:
        path = head_ablations_stage(config, model_dir, "arith", problems, out)
    finally:
        patch.undo()
    return path, calls


@pytest.fixture(scope="module")
def ablated(tmp_path_factory, config, tiny_model_dir, problems):
    """The evaluate stage's head ablations run once: (samples path, samples table, sample_table calls)."""
    path, calls = _recorded_ablations(config, tiny_model_dir, problems, tmp_path_factory.mktemp("ablate") / "s.parquet")
    return path, read_table(path, "intervention_samples"), calls


@pytest.fixture(scope="module")
def staged(tmp_path_factory, config, problems, ablated):
    """The failures stage run once on those samples: the calculation_heads table."""
    out = tmp_path_factory.mktemp("out") / "t.parquet"
    return read_table(calculation_heads_stage(config, ablated[0], problems, "arith", out, 2), "calculation_heads")


def _classified(rows: list[tuple[str, str]]) -> pl.DataFrame:
    """Hand-made classified samples: (difficulty, category)."""
    return pl.DataFrame(
        {"difficulty": [d for d, _ in rows], "category": [c for _, c in rows], "correct": [c == "correct" for _, c in rows]}
    )


def test_the_share_is_of_all_samples_per_difficulty_and_overall():
    assert CALCULATION in FAILURE_CATEGORIES
    samples = _classified(
        [
            ("easy", "correct"), ("easy", "calculation_error"), ("easy", "loop"), ("easy", "correct"),
            ("hard", "calculation_error"), ("hard", "calculation_error"), ("hard", "format"), ("hard", "no_trace"),
        ]
    )  # fmt: skip
    shares = calculation_shares(samples)
    assert shares["difficulty"].to_list() == ["easy", "hard", ALL]
    assert shares["calc_share"].to_list() == [0.25, 0.5, 3 / 8]
    assert shares["accuracy"].to_list() == [0.5, 0.0, 0.25]
    assert shares["n_samples"].to_list() == [4, 4, 8]
    single = calculation_shares(
        _classified([(ALL, "calculation_error"), (ALL, "correct")])
    )  # a task whose one difficulty is "all"
    assert single.rows() == [(ALL, 0.5, 0.5, 2)]
    with pytest.raises(ValueError, match="difficulty named 'all'"):
        calculation_shares(_classified([(ALL, "correct"), ("easy", "correct")]))


def test_rises_are_paired_against_the_unablated_model():
    base = _classified([("easy", "correct"), ("easy", "loop"), ("hard", "calculation_error"), ("hard", "format")])
    ablated = {
        (0, 1): _classified([("easy", "calculation_error"), ("easy", "loop"), ("hard", "calculation_error"), ("hard", "format")]),
        (0, 0): base,
    }
    table = calculation_heads_table(base, ablated, top_k=5)
    assert table.select("layer", "head", "difficulty").rows() == [
        (0, 0, "easy"), (0, 0, "hard"), (0, 0, ALL), (0, 1, "easy"), (0, 1, "hard"), (0, 1, ALL),
    ]  # fmt: skip
    head = table.filter((pl.col("head") == 1) & (pl.col("difficulty") == ALL)).row(0, named=True)
    assert head["calc_share"] == 0.5 and head["calc_share_base"] == 0.25 and head["calc_rise"] == 0.25
    assert head["accuracy"] == 0.0 and head["accuracy_base"] == 0.25 and head["accuracy_change"] == -0.25
    assert table.filter(pl.col("head") == 0)["calc_rise"].to_list() == [0.0] * 3
    assert table.filter(pl.col("head") == 1).select("rank", "selected").unique().rows() == [(1, True)]
    assert table.filter(pl.col("head") == 0).select("rank", "selected").unique().rows() == [(2, False)]  # no rise
    with pytest.raises(ValueError, match="paired"):
        calculation_heads_table(base, {(0, 0): base.head(3)}, top_k=1)


def _overall(rises: dict[tuple[int, int], float]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "layer": [layer for layer, _ in rises],
            "head": [head for _, head in rises],
            "difficulty": [ALL] * len(rises),
            "calc_rise": list(rises.values()),
        }
    )


def test_selection_takes_the_top_k_rises_ties_by_layer_then_head():
    table = _overall({(1, 0): 0.1, (0, 3): 0.3, (0, 1): 0.1, (1, 2): -0.2, (0, 0): 0.0, (1, 1): 0.3})
    ranked = rank_heads(table, top_k=3)
    by_rank = ranked.sort("rank").select("layer", "head", "rank", "selected").rows()
    assert by_rank == [(0, 3, 1, True), (1, 1, 2, True), (0, 1, 3, True), (1, 0, 4, False), (0, 0, 5, False), (1, 2, 6, False)]
    assert ranked.select("layer", "head").rows() == table.select("layer", "head").rows()  # the rows keep their order
    assert rank_heads(table, top_k=0)["selected"].sum() == 0


def test_fewer_than_k_heads_are_selected_when_fewer_raise_the_share():
    table = _overall({(0, 0): 0.0, (0, 1): 0.2, (0, 2): -0.1, (0, 3): 0.0})
    ranked = rank_heads(table, top_k=3)
    assert ranked.filter("selected").select("layer", "head").rows() == [(0, 1)]
    assert sorted(ranked["rank"]) == [1, 2, 3, 4]
    assert not rank_heads(_overall({(0, 0): 0.0, (0, 1): -0.5}), top_k=2)["selected"].any()  # none raises it: none chosen
    with_rows = pl.concat([table, table.with_columns(pl.lit("easy").alias("difficulty"), pl.lit(9.0).alias("calc_rise"))])
    assert rank_heads(with_rows, 1).filter(pl.col("difficulty") == "easy")["selected"].to_list() == [False, True, False, False]
    with pytest.raises(ValueError, match="at least 0"):
        rank_heads(table, top_k=-1)


def test_the_ablations_sample_every_head_alone_after_the_unablated_model(ablated, tiny_model_dir):
    _, samples, _ = ablated
    assert samples["heads_from"].unique(maintain_order=True).to_list() == ["none", *HEAD_NAMES]
    assert samples.group_by("heads_from").len()["len"].to_list() == [6] * (1 + N_HEADS)  # 6 eval problems, 1 sample
    assert samples["kind"].unique().to_list() == ["ablate"] and samples["step"].unique().to_list() == [0]
    assert samples["seed"].is_null().all() and samples["alpha"].is_null().all()
    assert samples["run"].unique().to_list() == [tiny_model_dir.name]  # the folder's name, without --role


def test_the_stage_writes_one_overall_row_per_head_and_ranks_them(staged, config, ablated):
    table = staged
    overall = table.filter(pl.col("difficulty") == ALL)
    assert overall.height == N_HEADS and overall.select("layer", "head").n_unique() == N_HEADS
    assert table.height == N_HEADS * 4  # easy, medium, hard and all
    assert set(table["difficulty"]) == {*config["tasks"]["arith"]["difficulties"], ALL}
    assert sorted(overall["rank"]) == list(range(1, N_HEADS + 1))
    ordered = overall.sort("rank")
    assert ordered["calc_rise"].to_list() == sorted(ordered["calc_rise"], reverse=True)
    assert table.select((pl.col("n_samples") == pl.when(pl.col("difficulty") == ALL).then(6).otherwise(2)).all()).item()
    chosen = overall.filter("selected")
    assert chosen.height <= 2 and (chosen["calc_rise"] > 0).all() and (chosen["rank"] <= 2).all()
    samples = ablated[1]
    assert table["run"].unique().to_list() == samples["run"].unique().to_list() and table["step"].is_null().all()
    assert table["model_hash"].unique().to_list() == samples["model_hash"].unique().to_list()
    assert table["task"].unique().to_list() == ["arith"]


def test_the_baseline_is_an_evaluation_without_intervention(ablated, staged, config, tiny_model_dir, problems):
    from sparks.data.prompting import Prompter
    from sparks.data.tasks import eval_problems
    from sparks.evaluate import EvaluateSettings, sample_table
    from sparks.model.load import load_checkpoint

    _, samples, calls = ablated
    assert len(calls) == 1 + N_HEADS and calls[0][0] is None
    assert [[h.name for h in change.heads] for change, _ in calls[1:]] == [[name] for name in HEAD_NAMES]
    model, tok = load_checkpoint(tiny_model_dir)
    plain = sample_table(
        model, tok, eval_problems(problems), EvaluateSettings.from_config(config), seed=config["seed"],
        source="synthetic", prompter=Prompter.of(tok, config),
    )  # fmt: skip
    base = samples.filter(pl.col("heads_from") == "none")
    assert plain["completion"].to_list() == base["completion"].to_list() == calls[0][1]["completion"].to_list()
    accuracy = dict(plain.group_by("difficulty").agg(pl.col("correct").cast(pl.Float64).mean()).rows())
    head = staged.filter((pl.col("layer") == 0) & (pl.col("head") == 0) & (pl.col("difficulty") != ALL))
    assert dict(head.select("difficulty", "accuracy_base").rows()) == accuracy
    ablations = samples.filter(pl.col("heads_from") != "none").partition_by("heads_from", maintain_order=True)
    assert any(part["completion"].to_list() != plain["completion"].to_list() for part in ablations)  # an ablation changes text


def test_two_runs_give_the_same_table(ablated, staged, config, tiny_model_dir, problems, tmp_path):
    samples = head_ablations_stage(config, tiny_model_dir, "arith", problems, tmp_path / "s.parquet")
    assert read_table(samples, "intervention_samples").drop("created_at").equals(ablated[1].drop("created_at"))
    again = read_table(
        calculation_heads_stage(config, samples, problems, "arith", tmp_path / "t.parquet", 2), "calculation_heads"
    )
    assert again.drop("created_at").equals(staged.drop("created_at"))


def test_a_vllm_backend_still_ablates_with_hf(caplog, ablated, config, tiny_model_dir, problems, tmp_path):
    """The head hooks run in the Hugging Face model only: a vllm generation backend is logged and
    the ablations generate with hf, the same samples as under backend hf."""
    vllm = {**config, "generation": {**config["generation"], "backend": "vllm"}}
    with caplog.at_level("INFO", logger=ablations.__name__):
        path = head_ablations_stage(vllm, tiny_model_dir, "arith", problems, tmp_path / "s.parquet", role="base")
    assert "head-ablations generates with hf" in caplog.text
    samples = read_table(path, "intervention_samples")
    assert samples["run"].unique().to_list() == ["base"]  # --role names the run
    assert samples.drop("created_at", "run").equals(ablated[1].drop("created_at", "run"))


def test_samples_without_the_unablated_model_are_refused(ablated, config, problems, tmp_path):
    heads_only = ablated[1].filter(pl.col("heads_from") != "none")
    path = write_table(heads_only, "intervention_samples", tmp_path / "s.parquet")
    with pytest.raises(ValueError, match="no unablated samples"):
        calculation_heads_stage(config, path, problems, "arith", tmp_path / "t.parquet", 2)
    assert not (tmp_path / "t.parquet").exists()


@pytest.fixture(scope="module")
def louder_model_dir(tmp_path_factory, tiny_model_dir):
    """The tiny model with every head's output projection 8 times larger: ablating one head alone
    then changes some sampled texts (in the plain tiny model the residual stream drowns most heads)."""
    import torch

    from sparks.model.load import load_checkpoint

    model, tok = load_checkpoint(tiny_model_dir, device="cpu")
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.mul_(8)
    folder = tmp_path_factory.mktemp("louder")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_selected_heads_follow_the_calculation_error_rises(monkeypatch, config, louder_model_dir, problems, tmp_path):
    """A stand-in classifier that calls a sample a calculation error by a checksum of its text (a
    random model never writes a checkable step), so that the ablations give different shares:
    the stage selects, by rise, the top 3 heads with a positive rise (here fewer than 3 raise it)."""
    import zlib

    def stand_in(samples, problems, config, task, max_new_tokens):
        flagged = [zlib.crc32(c.encode()) % 2 == 1 for c in samples["completion"]]
        return samples.with_columns(pl.Series("category", [CALCULATION if f else "format" for f in flagged]))

    monkeypatch.setattr(calculation, "classified", stand_in)
    zero = {**config, "evaluate": {**config["evaluate"], "ablation": "zero", "max_new_tokens": 8}}
    samples = head_ablations_stage(zero, louder_model_dir, "arith", problems, tmp_path / "s.parquet")
    out = calculation_heads_stage(zero, samples, problems, "arith", tmp_path / "t.parquet", 3)
    table = read_table(out, "calculation_heads")
    overall = table.filter(pl.col("difficulty") == ALL).sort("rank")
    assert overall["calc_rise"].n_unique() > 1 and (overall["calc_rise"] <= 0).any()  # the heads differ
    positive = overall.filter(pl.col("calc_rise") > 0)
    assert 0 < positive.height < 3  # this model: fewer heads raise the share than are asked for
    assert overall.filter("selected").select("layer", "head").rows() == positive.select("layer", "head").rows()
    for _, rows in table.group_by("layer", "head"):
        assert rows.select("rank", "selected").n_unique() == 1  # every row of a head carries its rank
    assert table["run"].unique().to_list() == [louder_model_dir.name]  # the samples' run: the folder's name


def _dispatched(monkeypatch, module, stage: str, command: str, argv: list[str]) -> tuple:
    """The arguments the ``sparks`` command passes to the stage function (``module.stage``)."""
    from conftest import REPO, commands

    seen = {}
    monkeypatch.setattr(module, stage, lambda *a: seen.setdefault("args", a))
    args = commands()[command].parse_args(argv)
    args.config = REPO / "workflow_config.yaml"
    args.func(args)
    return seen["args"]


def test_the_head_ablations_command_runs_its_stage(monkeypatch, config, tiny_model_dir, problems):
    argv = ["--task", "arith", "--model", str(tiny_model_dir), "--problems", str(problems), "--out", "s.parquet"]
    read, model, task, problems_path, out, role = _dispatched(
        monkeypatch, ablations, "head_ablations_stage", "head-ablations", [*argv, "--role", "base"]
    )
    assert (model, task, problems_path, str(out), role) == (tiny_model_dir, "arith", problems, "s.parquet", "base")
    assert read["seed"] == config["seed"]  # the config file, read
    role = _dispatched(monkeypatch, ablations, "head_ablations_stage", "head-ablations", argv)[-1]
    assert role is None  # without --role: the folder's name


def test_the_calculation_heads_command_runs_its_stage(monkeypatch, problems):
    argv = ["--task", "arith", "--samples", "s.parquet", "--problems", str(problems), "--top-k", "4", "--out", "o.parquet"]
    _, samples, problems_path, task, out, top_k = _dispatched(
        monkeypatch, calculation, "calculation_heads_stage", "calculation-heads", argv
    )
    assert (str(samples), problems_path, task, str(out), top_k) == ("s.parquet", problems, "arith", "o.parquet", 4)
