"""resources.train.gpus: one GPU runs `sparks train`; more run it under `accelerate launch` with an
accelerate config accelerate itself accepts, and ask the scheduler for that many GPUs."""

from __future__ import annotations

import types

import pytest
import yaml
from conftest import REPO, snakemake

from sparks.config import ConfigError, check_config
from sparks.train.launch import STRATEGIES, launcher, write_accelerate_config


@pytest.mark.parametrize("gpus", [1, 2, 8])
def test_launch_command_for_1_2_and_8_gpus(gpus):
    command = launcher(gpus, "runs/sft/accelerate.yaml")
    if gpus == 1:
        assert command == "sparks"
    else:
        assert command == f"accelerate launch --config_file runs/sft/accelerate.yaml --num_processes {gpus} -m sparks.cli"


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_accelerate_reads_each_strategys_config(strategy, tmp_path):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(write_accelerate_config(8, strategy, tmp_path / "accelerate.yaml")))
    expected = {"ddp": "MULTI_GPU", "zero2": "DEEPSPEED", "zero3": "DEEPSPEED", "fsdp": "FSDP"}[strategy]
    assert config.num_processes == 8 and config.distributed_type.value == expected and config.mixed_precision == "bf16"
    if strategy.startswith("zero"):
        assert config.deepspeed_config["zero_stage"] == int(strategy[-1])
    if strategy == "fsdp":
        assert config.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"  # checkpoints stay plain HF folders


def test_bad_gpu_settings_are_refused(raw_config):
    raw_config["resources"] = {"train": {"mem_mb": 1000, "runtime": 10, "gpus": 0}}
    with pytest.raises(ConfigError, match="resources.train.gpus"):
        check_config(raw_config)
    raw_config["resources"] = {"train": {"mem_mb": 1000, "runtime": 10, "gpus": 2, "strategy": "zero1"}}
    with pytest.raises(ConfigError, match="resources.train.strategy"):
        check_config(raw_config)


def test_the_train_rule_launches_on_every_gpu_it_asks_for(tmp_path):
    raw = yaml.safe_load((REPO / "workflow_config.yaml").read_text())
    raw["resources"] = {"train": {"mem_mb": 8000, "runtime": 60, "gpus": 4, "strategy": "fsdp"}}
    (tmp_path / "gpus.yaml").write_text(yaml.safe_dump(raw))
    result = snakemake(
        tmp_path, "results/embedded/runs/sft/checkpoints.json", "-n", "-p", "--configfile", str(tmp_path / "gpus.yaml")
    )
    assert result.returncode == 0, result.stderr[-3000:]
    train = result.stdout.split("checkpoint train:")[1]
    assert "gpu=4" in train
    assert (
        "sparks accelerate-config" in train
        and "accelerate launch --config_file results/embedded/runs/sft/accelerate.yaml" in train
    )
    assert "--num_processes 4 -m sparks.cli train --config" in train


def test_only_the_first_process_marks_checkpoints(tmp_path):
    from sparks.train.resume import COMPLETE, CheckpointMarker

    (tmp_path / "checkpoint-2").mkdir()
    CheckpointMarker(tmp_path).on_save(None, types.SimpleNamespace(global_step=2, is_world_process_zero=False), None)
    assert not (tmp_path / "checkpoint-2" / COMPLETE).exists()
    CheckpointMarker(tmp_path).on_save(None, types.SimpleNamespace(global_step=2, is_world_process_zero=True), None)
    assert (tmp_path / "checkpoint-2" / COMPLETE).exists()
