"""Several GPUs per training job: the accelerate config and the command that runs ``sparks
train`` under ``accelerate launch`` (``resources.train.gpus`` > 1). One GPU runs ``sparks``
itself, as before; the train stage then writes from its main process only (sparks.train)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from sparks.atomic import atomic_file

STRATEGIES = ("ddp", "zero2", "zero3", "fsdp")  # resources.train.strategy


def accelerate_config(gpus: int, strategy: str) -> dict[str, Any]:
    """The accelerate config (as ``accelerate config`` writes it) of one node with ``gpus`` GPUs."""
    if strategy not in STRATEGIES:
        raise ValueError(f"resources.train.strategy = {strategy!r} is not one of {', '.join(STRATEGIES)}")
    config: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "num_machines": 1,
        "machine_rank": 0,
        "num_processes": gpus,
        "gpu_ids": "all",
        "mixed_precision": "bf16",
        "rdzv_backend": "static",
        "same_network": True,
        "use_cpu": False,
        "distributed_type": "MULTI_GPU",
    }
    if strategy in ("zero2", "zero3"):
        config["distributed_type"] = "DEEPSPEED"
        config["deepspeed_config"] = {
            "zero_stage": 2 if strategy == "zero2" else 3,
            "offload_optimizer_device": "none",
            "offload_param_device": "none",
            "zero3_init_flag": strategy == "zero3",
            "zero3_save_16bit_model": strategy == "zero3",  # whole weights in each checkpoint, not shards
        }
    elif strategy == "fsdp":
        config["distributed_type"] = "FSDP"
        config["fsdp_config"] = {
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "fsdp_sharding_strategy": "FULL_SHARD",
            "fsdp_state_dict_type": "FULL_STATE_DICT",  # checkpoints load as plain Hugging Face folders
            "fsdp_offload_params": False,
            "fsdp_cpu_ram_efficient_loading": True,
            "fsdp_sync_module_states": True,
        }
    return config


def write_accelerate_config(gpus: int, strategy: str, out: Path) -> Path:
    with atomic_file(out) as tmp:
        tmp.write_text(yaml.safe_dump(accelerate_config(gpus, strategy), sort_keys=True))
    return Path(out)


def launcher(gpus: int, config_file: str) -> str:
    """The command that starts a training job: ``sparks``, or with several GPUs ``accelerate
    launch`` of ``sparks.cli`` on as many processes (the train command's arguments follow)."""
    if gpus == 1:
        return "sparks"
    return f"accelerate launch --config_file {config_file} --num_processes {gpus} -m sparks.cli"
