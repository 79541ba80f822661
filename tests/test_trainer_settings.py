"""runs.<name>.trainer: TRL's own settings passed through to SFTConfig / GRPOConfig, checked
against the dataclass's fields, never overriding what sparks sets from its own keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO

from sparks.config import ConfigError, check_config
from sparks.methods import micro_batches
from sparks.train.methods import _common_args


def grpo_config(run: dict, out: Path):
    from trl import GRPOConfig

    g = run["grpo"]
    keys = ("num_generations", "temperature", "beta", "scale_rewards", "num_iterations", "max_completion_length")
    return GRPOConfig(**_common_args(run, 0, out), **{k: g[k] for k in keys})


def test_grpo_settings_pass_through_including_vllm(raw_config, tmp_path):
    raw_config["runs"]["grpo"]["trainer"] = {
        "use_vllm": True,
        "vllm_mode": "colocate",
        "loss_type": "dr_grpo",
        "report_to": ["trackio"],
        "logging_steps": 5,
    }
    raw_config["runs"]["grpo"]["micro_batch_size"] = 32
    run = check_config(raw_config)["runs"]["grpo"]
    args = grpo_config(run, tmp_path)
    assert args.use_vllm and args.vllm_mode == "colocate" and args.loss_type == "dr_grpo" and args.report_to == ["trackio"]
    assert args.gradient_accumulation_steps == 4 and args.per_device_train_batch_size == 128 // 4  # batch_size keeps its meaning
    assert args.logging_steps == 5 and args.learning_rate == run["learning_rate"] and args.max_steps == run["max_steps"]


def test_sft_settings_pass_through(raw_config, tmp_path):
    from trl import SFTConfig

    raw_config["runs"]["sft"]["trainer"] = {"lr_scheduler_type": "cosine", "push_to_hub": False, "weight_decay": 0.1}
    run = check_config(raw_config)["runs"]["sft"]
    args = SFTConfig(**_common_args(run, 0, tmp_path))
    assert args.lr_scheduler_type == "cosine" and args.weight_decay == 0.1
    assert check_config(dict(raw_config, runs={"sft": {"method": "sft"}}))["runs"]["sft"]["trainer"] == {}  # default: nothing


@pytest.mark.parametrize(
    ("run", "trainer", "message"),
    [
        ("grpo", {"lerning_rate": 1e-5}, "not a field of TRL's GRPOConfig; did you mean learning_rate"),
        ("sft", {"use_vllm": True}, "not a field of TRL's SFTConfig"),  # GRPO's, not SFT's
        ("grpo", {"learning_rate": 1e-5}, "use runs.grpo.learning_rate"),
        ("grpo", {"num_generations": 4}, "use runs.grpo.grpo.num_generations"),
        ("sft", {"per_device_train_batch_size": 4}, "runs.sft.micro_batch_size"),
        ("grpo", {"gradient_accumulation_steps": 4}, "runs.grpo.micro_batch_size"),
        ("distill", {"seed": 3}, "runs.distill.seed"),
    ],
)
def test_bad_trainer_keys_are_refused_by_name(raw_config, run, trainer, message):
    raw_config["runs"][run]["trainer"] = trainer
    with pytest.raises(ConfigError, match=message):
        check_config(raw_config)


def test_micro_batches_split_the_step_over_accumulation_and_gpus():
    run = {"batch_size": 64, "micro_batch_size": 4}
    assert micro_batches(run, 1) == (4, 16) and micro_batches(run, 2) == (4, 8) and micro_batches(run, 16) == (4, 1)
    assert micro_batches({"batch_size": 64, "micro_batch_size": None}, 2) == (32, 1)  # null: the GPU's share at once
    for processes in (32, 3):
        with pytest.raises(ValueError, match="not a multiple"):
            micro_batches(run, processes)


def test_grpo_generates_the_step_at_once_but_trains_in_micro_batches(tmp_path):
    """Issue 30: a GRPO step of 256 completions on one GPU ran as one micro-batch (over 80 GB on a
    1.5B model); the paper configs accumulate micro-batches, and TRL still samples all 256 at once."""
    from sparks.config import load_config

    run = load_config(REPO / "config" / "qwen-math-1.5b_openr1_grpo.yaml")["runs"]["grpo"]
    args = grpo_config(run, tmp_path)
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps == run["batch_size"] == 256
    assert args.per_device_train_batch_size <= 16 and args.generation_batch_size == 256
