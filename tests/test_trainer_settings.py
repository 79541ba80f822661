"""runs.<name>.trainer: TRL's own settings passed through to SFTConfig / GRPOConfig, checked
against the dataclass's fields, never overriding what sparks sets from its own keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparks.config import ConfigError, check_config
from sparks.train.methods import _common_args, per_device_batch


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
        "gradient_accumulation_steps": 4,
        "report_to": ["trackio"],
        "logging_steps": 5,
    }
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
        ("sft", {"per_device_train_batch_size": 4}, "runs.sft.batch_size"),
        ("distill", {"seed": 3}, "runs.distill.seed"),
    ],
)
def test_bad_trainer_keys_are_refused_by_name(raw_config, run, trainer, message):
    raw_config["runs"][run]["trainer"] = trainer
    with pytest.raises(ConfigError, match=message):
        check_config(raw_config)


def test_per_device_batch_splits_the_step_over_accumulation_and_gpus():
    run = {"batch_size": 64, "trainer": {"gradient_accumulation_steps": 4}}
    assert per_device_batch(run, 1) == 16 and per_device_batch(run, 2) == 8 and per_device_batch(run, 8) == 2
    with pytest.raises(ValueError, match="not a multiple"):
        per_device_batch(run, 32)
