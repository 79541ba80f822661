"""One builder per post-training method; each returns a ready TRL trainer.

SFT and distillation share one SFT path (distillation swaps in the teacher's sampled traces,
which ``sparks teacher-traces`` wrote beforehand);
GRPO scores sampled completions with the rewards named in the run's config.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import polars as pl
import torch
from datasets import Dataset

from sparks.data.prompting import Prompter
from sparks.methods import micro_batches

log = logging.getLogger(__name__)


def _common_args(run: dict[str, Any], seed: int, out_dir: Path) -> dict[str, Any]:
    """The TRL arguments sparks sets, then the run's ``trainer`` section (TRL's own keys, checked
    against the dataclass and kept off sparks' keys by the config check)."""
    cuda = torch.cuda.is_available()
    processes = int(os.environ.get("WORLD_SIZE", "1"))  # accelerate launch sets it per process
    micro, accumulation = micro_batches(run, processes)
    return (
        dict(
            output_dir=str(out_dir),
            max_steps=run["max_steps"],
            save_steps=run["save_steps"],
            save_strategy="steps",
            save_only_model=False,  # resume state; sparks.train.resume keeps it in the newest checkpoint only
            save_total_limit=None,
            learning_rate=run["learning_rate"],
            lr_scheduler_type="constant_with_warmup",
            warmup_steps=min(10, run["max_steps"] // 10)
            if run["warmup_ratio"] is None
            else round(run["warmup_ratio"] * run["max_steps"]),
            per_device_train_batch_size=micro,
            gradient_accumulation_steps=accumulation,
            logging_steps=1,
            seed=seed + run["seed"],
            data_seed=seed + run["seed"],
            use_cpu=not cuda,
            bf16=cuda,
            report_to=[],
            dataloader_num_workers=0,
            disable_tqdm=False,
            gradient_checkpointing=run["gradient_checkpointing"],
        )
        | run["trainer"]
    )


def drop_long_examples(examples: Dataset, tokenizer, max_length: int) -> Dataset:
    """``examples`` without those longer than ``max_length`` tokens (prompt, completion and eos):
    TRL would cut them, and a trace cut before its answer teaches the wrong thing. The count is logged."""
    pairs = zip(examples["prompt"], examples["completion"])
    lengths = [len(tokenizer(p + c, add_special_tokens=False)["input_ids"]) + 1 for p, c in pairs]
    keep = [i for i, n in enumerate(lengths) if n <= max_length]
    if len(keep) == len(lengths):
        return examples
    if not keep:
        raise ValueError(f"every training example is longer than max_length = {max_length} tokens; raise runs.<name>.max_length")
    log.warning(
        "dropped %d of %d examples longer than max_length = %d tokens", len(lengths) - len(keep), len(lengths), max_length
    )
    return examples.select(keep)


def _sft_trainer(run, seed, start: Path, tokenizer, examples: Dataset, out_dir: Path):
    from trl import SFTConfig, SFTTrainer

    examples = drop_long_examples(examples, tokenizer, run["max_length"])
    args = SFTConfig(**_common_args(run, seed, out_dir), completion_only_loss=True, max_length=run["max_length"])
    return SFTTrainer(model=str(start), args=args, train_dataset=examples, processing_class=tokenizer)


def _prompt_completion(problems: pl.DataFrame, think: bool, prompter: Prompter) -> Dataset:
    prompts = [prompter.prompt(q, think) for q in problems["question"]]
    completions = [
        prompter.completion(p, t, a, r, think)
        for p, t, a, r in zip(prompts, problems["trace"], problems["answer"], problems["reply"])
    ]
    return Dataset.from_dict({"prompt": prompts, "completion": completions})


def sft(run, seed, start, tokenizer, problems, out_dir, prompter, source, teacher_traces=None):
    """Supervised fine-tuning on the task's reference traces (or answers, think off)."""
    return _sft_trainer(run, seed, start, tokenizer, _prompt_completion(problems, run["think"], prompter), out_dir)


def distill(run, seed, start, tokenizer, problems, out_dir, prompter, source, teacher_traces=None):
    """SFT on the teacher's samples for the training problems (the teacher_traces table of
    ``sparks teacher-traces``), kept when the task's checker found them right (``only_correct``)."""
    from sparks.tables import read_table

    if teacher_traces is None:
        raise ValueError(
            "a distill run trains on the teacher's samples: pass --teacher-traces <table from sparks teacher-traces>"
        )
    traces = read_table(teacher_traces, "teacher_traces")
    examples = distill_examples(traces, prompter, run["think"], run["distill"]["only_correct"])
    if not len(examples):
        raise ValueError(
            f"no usable teacher sample in {teacher_traces} ({traces.height} samples, "
            f"{traces['correct'].sum()} correct); set distill.only_correct: false or use a stronger teacher"
        )
    log.info("distilling on %d of %d teacher samples", len(examples), traces.height)
    return _sft_trainer(run, seed, start, tokenizer, examples, out_dir)


def distill_examples(traces: pl.DataFrame, prompter: Prompter, think: bool, only_correct: bool) -> Dataset:
    """The student's prompt/completion pairs from the teacher's samples. When teacher and student
    both use the plain format the sample is the target as written; otherwise it is re-written in
    the student's format from its trace and reply (samples without a closed trace, or with
    nothing after it, are dropped: the reference answer is never glued onto a teacher's trace)."""
    if only_correct:
        traces = traces.filter(pl.col("correct"))
    prompts, completions = [], []
    for row in traces.iter_rows(named=True):
        prompt = prompter.prompt(row["question"], think)
        if row["prompt_form"] == "plain" and not prompter.templated:
            completion = row["completion"]
        elif (row["trace"] is None and think) or not row["reply"]:
            continue
        else:
            completion = prompter.completion(prompt, row["trace"] or "", row["answer"], row["reply"], think)
        prompts.append(prompt)
        completions.append(completion)
    return Dataset.from_dict({"prompt": prompts, "completion": completions})


def grpo(run, seed, start, tokenizer, problems, out_dir, prompter, source, teacher_traces=None):
    """GRPO with the run's weighted rewards (correctness and format by default)."""
    from trl import GRPOConfig, GRPOTrainer

    from sparks.train.rewards import weighted_rewards

    settings = run["grpo"]
    funcs, weights = weighted_rewards(settings["rewards"])
    dataset = Dataset.from_dict(
        {
            "prompt": [prompter.prompt(q, run["think"]) for q in problems["question"]],
            "answer": list(problems["answer"]),
            "think": [run["think"]] * len(problems),
            "source": [source] * len(problems),  # which answer checker the rewards use
        }
    )
    args = GRPOConfig(
        **_common_args(run, seed, out_dir),
        num_generations=settings["num_generations"],
        temperature=settings["temperature"],
        beta=settings["beta"],
        scale_rewards=settings["scale_rewards"],
        num_iterations=settings["num_iterations"],
        max_completion_length=settings["max_completion_length"],
        reward_weights=weights,
    )
    trainer = GRPOTrainer(model=str(start), reward_funcs=funcs, args=args, train_dataset=dataset, processing_class=tokenizer)
    if args.use_vllm and args.vllm_mode == "colocate":
        reseed_after_colocated_vllm(trainer)
    return trainer


def reseed_after_colocated_vllm(trainer) -> None:
    """Give a GRPO trainer's process its replicate's seed back once TRL has started a colocated
    vLLM engine. TRL seeds that engine with the process index, whatever ``args.seed`` is
    (trl/generation/vllm_generation.py:357, TRL 1.16), and vLLM's worker, which runs in the
    trainer's process, reseeds torch, numpy and random with it when it starts (after TRL's own
    ``set_seed(args.seed, device_specific=True)``, trl/trainer/grpo_trainer.py:1103). Rollouts carry
    no per-request seed, so vLLM samples them from the process's default generator: without this,
    every replicate of a run samples the same rollouts. The ranks of one tensor-parallel group keep
    one seed, as TRL gives them (their engines must sample alike)."""
    from transformers import set_seed

    args = trainer.args
    set_seed(args.seed + trainer.accelerator.process_index // args.vllm_tensor_parallel_size)
