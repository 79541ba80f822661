"""GRPO with trainer.use_vllm (vllm_mode colocate): TRL 1.16 seeds the colocated engine with the
process index, and vLLM's worker, which runs in the trainer's process, reseeds torch with it when
it starts, after the trainer's own seed (trl/generation/vllm_generation.py:357,
trl/trainer/grpo_trainer.py:1103). The engine samples rollouts from that generator, so every
replicate would sample the same ones: sparks gives each replicate's process its seed back. vLLM
needs CUDA: a stand-in trainer does here what TRL and vLLM do to the seeds."""

from __future__ import annotations

import types

import polars as pl
import pytest
import torch

from sparks.config import check_config
from sparks.data.prompting import Prompter, PromptSettings


class ColocatedGRPOTrainer:
    """GRPOTrainer's start as far as the process's generators go."""

    def __init__(self, model, reward_funcs, args, train_dataset, processing_class):
        from transformers import set_seed

        self.args, self.accelerator = args, types.SimpleNamespace(process_index=0)
        set_seed(args.seed)  # TRL: set_seed(args.seed, device_specific=True), one process
        if args.use_vllm and args.vllm_mode == "colocate":  # vLLM's worker: set_random_seed(LLM's seed)
            torch.manual_seed(self.accelerator.process_index // args.vllm_tensor_parallel_size)


def rollout_draws(raw_config, tmp_path, monkeypatch, tokenizer, run_seed: int, **trainer) -> torch.Tensor:
    """What the engine's sampler would draw first in a GRPO replicate with trainer seed ``run_seed``."""
    import trl

    from sparks.train.methods import grpo

    monkeypatch.setattr(trl, "GRPOTrainer", ColocatedGRPOTrainer)
    raw_config["runs"]["grpo"]["trainer"] = trainer
    raw_config["runs"]["grpo"]["seed"] = run_seed
    run = check_config(raw_config)["runs"]["grpo"]
    problems = pl.DataFrame({"question": ["2+3="], "answer": ["5"]})
    prompter = Prompter(tokenizer, PromptSettings.defaults())
    built = grpo(run, 0, tmp_path / "base", tokenizer, problems, tmp_path / f"out{run_seed}", prompter, "synthetic")
    assert built.args.seed == run_seed
    return torch.rand(8)


def test_colocated_vllm_replicates_sample_their_own_rollouts(raw_config, tmp_path, monkeypatch, tokenizer):
    first, second = (rollout_draws(raw_config, tmp_path, monkeypatch, tokenizer, s, use_vllm=True) for s in (1, 2))
    assert not torch.equal(first, second)  # without sparks' reseed both are the stream of seed 0
    torch.manual_seed(1)
    assert torch.equal(first, torch.rand(8))  # the replicate's own seed, as on the hf path


def test_the_hf_path_keeps_trls_seeding(raw_config, tmp_path, monkeypatch, tokenizer):
    draws = rollout_draws(raw_config, tmp_path, monkeypatch, tokenizer, 3)
    torch.manual_seed(3)
    assert torch.equal(draws, torch.rand(8))


@pytest.mark.parametrize(("process", "tensor_parallel", "seed"), [(0, 1, 7), (3, 1, 10), (3, 2, 8)])
def test_tensor_parallel_ranks_keep_one_seed(process, tensor_parallel, seed):
    from sparks.train.methods import reseed_after_colocated_vllm

    args = types.SimpleNamespace(seed=7, vllm_tensor_parallel_size=tensor_parallel)
    reseed_after_colocated_vllm(types.SimpleNamespace(args=args, accelerator=types.SimpleNamespace(process_index=process)))
    draws = torch.rand(8)
    torch.manual_seed(seed)
    assert torch.equal(draws, torch.rand(8))
