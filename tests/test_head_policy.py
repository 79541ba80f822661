"""runs.<name>.heads: head sets named from other runs' tables, resolved by the DAG before the run
trains (sparks.train.policy), and the config's refusals."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

import polars as pl
import pytest

from sparks import layout, workflow
from sparks.config import ConfigError, check_config, paired_run
from sparks.tables import read_table, with_provenance, write_table
from sparks.train.policy import head_policy_stage, heads_from, read_policy

STEPS = {"sft": [0, 30], "grpo": [0, 40], "distill": [0, 30], "focus": [0, 30]}


def provenance(table: pl.DataFrame, run: str, step: int | None = None) -> pl.DataFrame:
    return with_provenance(table, experiment="embedded", run=run, step=step, task="arith", model_hash=None, config_hash="c")


def cohorts(run: str) -> pl.DataFrame:
    return provenance(
        pl.DataFrame(
            {"layer": [1, 2, 3], "head": [1, 0, 6], "cohort_step": [30, 30, None], "first_step": [0, 0, 0],
             "last_step": [30, 0, 30], "active_steps": [2, 1, 2], "status": ["emergent", "transient", "maintained"]}
        ),
        run,
    )  # fmt: skip


def calculation(rises: dict[tuple[int, int], float]) -> pl.DataFrame:
    ranked = sorted(rises, key=lambda h: (-rises[h], h))
    rows = [
        {"layer": h[0], "head": h[1], "difficulty": "all", "n_samples": 10, "calc_share": 0.2 + r, "calc_share_base": 0.2,
         "calc_rise": r, "accuracy": 0.5, "accuracy_base": 0.5, "accuracy_change": 0.0, "rank": ranked.index(h) + 1,
         "selected": False}
        for h, r in rises.items()
    ]  # fmt: skip
    return provenance(pl.DataFrame(rows), "base")


@pytest.fixture
def config(raw_config):
    raw_config["runs"]["focus"] = {
        **raw_config["runs"]["sft"],
        "heads": {"train_only": {"emergent_of": "sft"}, "compare_to": "sft"},
    }
    raw_config["runs"]["grpo"]["heads"] = {"freeze": {"calculation_heads": 2}, "anchor": {"heads": ["a0.h1"], "weight": 0.5}}
    return check_config(raw_config)


def test_a_policy_waits_for_the_tables_its_sets_name(config):
    """The DAG plans the dependency: focus (emergent_of: sft) reads sft's cohorts, grpo the base's
    calculation heads; their train jobs read the resolved policy."""
    graph = workflow.Workflow(config, "c.yaml", lambda run: STEPS[run])
    focus, grpo = SimpleNamespace(run="focus"), SimpleNamespace(run="grpo")
    assert graph.head_policy_inputs(focus) == {"train_only": layout.circuits("cohorts", "sft", "arith", "embedded")}
    assert graph.head_policy_inputs(grpo) == {"freeze": layout.calculation_heads("base", "arith", "embedded")}
    assert graph.run_inputs(focus)["head_policy"] == layout.head_policy("focus", "embedded")
    assert "head_policy" not in graph.run_inputs(SimpleNamespace(run="sft"))
    jobs = Counter(graph.jobs())
    assert jobs[workflow.Job("head_policy", "focus")] == jobs[workflow.Job("head_policy", "grpo")] == 1
    assert jobs[workflow.Job("head_ablations", "base", "arith")] == jobs[workflow.Job("calculation_heads", "base", "arith")] == 1
    assert graph.calculation_top_k(SimpleNamespace(role="base", task="arith")) == 2
    assert list(graph.policy_groups()) == ["focus"]
    assert graph.policy_inputs(SimpleNamespace(group="focus"))["plain_cohorts"] == [
        layout.circuits("cohorts", "sft", "arith", "embedded")
    ]


def test_head_sets_resolve_from_hand_made_tables():
    assert heads_from({"emergent_of": "sft"}, cohorts("sft")) == ["a1.h1"]  # emergent only, not transient
    assert heads_from({"calculation_heads": 2}, calculation({(0, 1): 0.1, (2, 3): 0.3, (1, 0): 0.2})) == ["a1.h0", "a2.h3"]
    assert heads_from({"calculation_heads": 3}, calculation({(0, 1): 0.1, (2, 3): 0.0, (1, 0): -0.1})) == ["a0.h1"]
    circuit = pl.DataFrame({"step": [0, 0, 30], "layer": [0, 1, 2], "head": [5, 2, 1], "in_circuit": [True, False, True]})
    assert heads_from({"base_circuit_of": "sft"}, circuit) == ["a0.h5"]
    robust = pl.DataFrame({"layer": [1, 1, 3], "head": [1, 1, 0], "robust": [True, True, None]})
    assert heads_from({"robust_of": "sft"}, robust) == ["a1.h1"]
    assert heads_from(["a2.h3", "a0.h0"], None) == ["a2.h3", "a0.h0"]


def test_the_stage_writes_the_policy_train_reads(config, tmp_path):
    paths = {
        "freeze": write_table(calculation({(0, 1): 0.1, (3, 2): 0.3}), "calculation_heads", tmp_path / "c.parquet"),
    }
    out = head_policy_stage(config, "grpo", paths, tmp_path / "grpo.parquet")
    table = read_table(out, "head_policy")
    assert table.select("policy", "layer", "head", "weight").rows() == [
        ("freeze", 0, 1, None), ("freeze", 3, 2, None), ("anchor", 0, 1, 0.5)
    ]  # fmt: skip
    policy = read_policy(config, "grpo", out)
    assert (policy.freeze, policy.train_only, policy.anchor, policy.anchor_weight) == (("a0.h1", "a3.h2"), None, ("a0.h1",), 0.5)
    with pytest.raises(ValueError, match="pass its table"):
        head_policy_stage(config, "grpo", {}, tmp_path / "x.parquet")
    empty = write_table(cohorts("sft").filter(pl.col("status") == "lost"), "cohorts", tmp_path / "none.parquet")
    focus = read_policy(config, "focus", head_policy_stage(config, "focus", {"train_only": empty}, tmp_path / "f.parquet"))
    assert focus.train_only == ()  # an empty set trains nothing (sparks.train.heads keeps every weight)


def test_replicates_pair_by_seed(raw_config):
    raw_config["runs"]["sft"]["seeds"] = [0, 1]
    raw_config["runs"]["focus"] = {**raw_config["runs"]["sft"], "heads": {"train_only": {"emergent_of": "sft"}}}
    raw_config["runs"]["odd"] = {**raw_config["runs"]["sft"], "seeds": [5, 6], "heads": {"freeze": {"emergent_of": "sft"}}}
    config = check_config(raw_config)
    assert paired_run(config, "focus-s1", "sft") == "sft-s1"
    assert paired_run(config, "grpo", "distill") == "distill"
    with pytest.raises(ConfigError, match="robust_of: sft"):
        paired_run(config, "odd-s5", "sft")


@pytest.mark.parametrize(
    ("heads", "message"),
    [
        ({"freeze": ["a0.h0"], "train_only": ["a0.h1"]}, "both freeze and train_only"),
        ({"freeze": {"emergent_of": "nope"}}, "not another run"),
        ({"freeze": {"emergent_of": "sft"}, "compare_to": "sft"}, None),
        ({"anchor": {"heads": ["a9.h0"], "weight": 1.0}}, "a9.h0"),
        ({"freeze": {"robust_of": "sft"}}, "needs a replicated run"),
        ({"freeze": ["a0.h0"], "compare_to": "grpo"}, "without heads"),
    ],
)
def test_bad_policies_are_refused(raw_config, heads, message):
    raw_config["runs"]["grpo"]["heads"] = {"freeze": {"emergent_of": "distill"}}
    raw_config["runs"]["distill"]["heads"] = heads
    if message is None:
        check_config(raw_config)
        return
    with pytest.raises(ConfigError, match=message):
        check_config(raw_config)


def test_a_policy_cannot_wait_for_itself(raw_config):
    raw_config["runs"]["sft"]["heads"] = {"freeze": {"emergent_of": "grpo"}}
    raw_config["runs"]["grpo"]["heads"] = {"train_only": {"emergent_of": "sft"}}
    with pytest.raises(ConfigError, match="lead back"):
        check_config(raw_config)


def test_an_empty_train_list_trains_nothing(tiny_model_dir):
    """A resolved train_only set can be empty (a plain run that called no head): the optimizer still
    gets one parameter, whose gradient is always zero, and every weight stays as it was."""
    import torch

    from sparks.model.load import load_checkpoint
    from sparks.train.heads import restrict_updates

    model, _ = load_checkpoint(tiny_model_dir)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    restriction = restrict_updates(model, train=[], key="runs.x.heads.train_only")
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert restriction.trainable == 0 and len(trainable) == 1
    optimizer = torch.optim.AdamW(trainable, lr=0.1, weight_decay=0.0)
    ids = torch.tensor([[1, 2, 3, 4]])
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
