"""A training method is one descriptor (sparks.methods): registering a new one is all a config,
the workflow graph and ``sparks plan`` need to accept, wire and price it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from sparks import layout, methods, workflow
from sparks.config import ConfigError, check_config
from sparks.plan import Throughput, plan_table


def build(*args, **kwargs):  # the dummy method's trainer builder (never run here)
    return "a trainer"


@pytest.fixture
def dummy():
    method = methods.register(
        methods.TrainingMethod(
            "dummy",
            "test_methods:build",
            "SFTConfig",
            cost=lambda run, prompt, example, params, t: 0.25 * run["max_steps"],
            owned={"beta": "nothing: the dummy has no beta"},
        )
    )
    yield method
    methods.TRAINING.pop("dummy")


def test_a_registered_method_is_checked_wired_and_planned(dummy, raw_config):
    raw_config["runs"]["dpolike"] = {"method": "dummy", "max_steps": 60, "save_steps": 30}
    config = check_config(raw_config)
    plan = {row["rule"]: row for row in plan_table(config).iter_rows(named=True)}
    default = {
        row["rule"]: row
        for row in plan_table(
            check_config({**raw_config, "runs": {k: v for k, v in raw_config["runs"].items() if k != "dpolike"}})
        ).iter_rows(named=True)
    }
    assert plan["train"]["jobs"] == default["train"]["jobs"] + 1
    assert plan["train"]["gpu_hours"] == pytest.approx(default["train"]["gpu_hours"] + 15.0)  # its own cost model
    assert plan["attribute"]["jobs"] == default["attribute"]["jobs"] + 3  # steps 0, 30, 60
    graph = workflow.Workflow(config, "x.yaml", lambda run: [0, 30, 60])
    assert graph.run_inputs(SimpleNamespace(run="dpolike")) == {
        "base": layout.model("base", "embedded"),
        "problems": layout.problems("arith", "embedded"),
    }
    assert methods.training_method("dummy").build()() == "a trainer"  # what the train stage calls


def test_a_methods_owned_keys_and_unknown_names_are_refused(dummy, raw_config):
    raw_config["runs"]["x"] = {"method": "dummy", "max_steps": 60, "save_steps": 30, "trainer": {"beta": 0.1}}
    with pytest.raises(ConfigError, match="runs.x.trainer.beta .*the dummy has no beta"):
        check_config(raw_config)
    raw_config["runs"]["x"] = {"method": "dumy", "max_steps": 60, "save_steps": 30}
    with pytest.raises(ConfigError, match="dummy"):  # the known names include the registered one
        check_config(raw_config)
    with pytest.raises(ValueError, match="registered already"):
        methods.register(dummy)


def test_the_builtin_methods_cost_what_the_plan_said():
    t, run = Throughput(), {"max_steps": 100, "batch_size": 8, "trainer": {}}
    assert methods.training_method("sft").cost(run, 50, 200, 1e9, t) == pytest.approx(t.compute_hours(6 * 1e9 * 100 * 8 * 200))
    grpo = {**run, "grpo": {"max_completion_length": 100, "num_iterations": 1}}
    expected = t.generation_hours(800 * 100, 1e9) + t.compute_hours(6 * 1e9 * 800 * 150)
    assert methods.training_method("grpo").cost(grpo, 50, 200, 1e9, t) == pytest.approx(expected)
    assert methods.training_method("distill").inputs == ("teacher_traces",)


def doubled_eap(model, batches, metric, settings, edges=True):
    """A dummy attribution method: EAP-IG's scores, doubled."""
    from dataclasses import replace

    from sparks.attribute.eap import score

    scores = score(model, batches, metric, settings, edges)
    return replace(scores, heads=2 * scores.heads, edges=None if scores.edges is None else 2 * scores.edges)


def test_a_registered_attribution_method_scores_the_checkpoint(tiny_model_dir, tokenizer):
    import polars as pl

    from sparks.attribute import AttributeSettings, score_checkpoint
    from sparks.data.tasks import task_pairs

    task = {"source": "synthetic", "difficulties": {"easy": 1, "medium": 2}, "n_pairs": 12}
    pairs = task_pairs(pl.DataFrame(), task, seed=3, tokenizer=tokenizer).filter(~pl.col("think"))

    methods.register(methods.AttributionMethod("doubled", "test_methods:doubled_eap"))
    try:
        eap = score_checkpoint(tiny_model_dir, pairs, AttributeSettings.defaults(max_pairs=6, batch_size=8), tables=("heads",))
        settings = AttributeSettings.defaults(max_pairs=6, batch_size=8, method="doubled")
        doubled = score_checkpoint(tiny_model_dir, pairs, settings, tables=("heads",))
    finally:
        methods.ATTRIBUTION.pop("doubled")
    assert (eap["heads"]["score"].abs() > 0).any()
    assert (doubled["heads"]["score"] - 2 * eap["heads"]["score"]).abs().max() < 1e-5
    with pytest.raises(ConfigError, match="attribute.method = 'doubled' is not one of eap_ig"):
        AttributeSettings.defaults(method="doubled")  # unregistered again
