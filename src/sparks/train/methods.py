"""One builder per post-training method; each returns a ready TRL trainer.

SFT and distillation share one SFT path (distillation only swaps in teacher-sampled traces);
GRPO scores sampled completions with the rewards named in the run's config.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import torch
from datasets import Dataset

from sparks import registry
from sparks.data.prompting import Prompter

log = logging.getLogger(__name__)


def _common_args(run: dict[str, Any], seed: int, out_dir: Path) -> dict[str, Any]:
    cuda = torch.cuda.is_available()
    return dict(
        output_dir=str(out_dir),
        max_steps=run["max_steps"],
        save_steps=run["save_steps"],
        save_strategy="steps",
        save_only_model=False,  # resume state; sparks.train.resume keeps it in the newest checkpoint only
        save_total_limit=None,
        learning_rate=run["learning_rate"],
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=min(10, run["max_steps"] // 10),
        per_device_train_batch_size=run["batch_size"],
        gradient_accumulation_steps=1,
        logging_steps=1,
        seed=seed + run["seed"],
        data_seed=seed + run["seed"],
        use_cpu=not cuda,
        bf16=cuda,
        report_to=[],
        dataloader_num_workers=0,
        disable_tqdm=False,
    )


def _sft_trainer(run, seed, start: Path, tokenizer, examples: Dataset, out_dir: Path):
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(**_common_args(run, seed, out_dir), completion_only_loss=True, max_length=run["max_length"])
    return SFTTrainer(model=str(start), args=args, train_dataset=examples, processing_class=tokenizer)


def _prompt_completion(problems: pl.DataFrame, think: bool, prompter: Prompter) -> Dataset:
    prompts = [prompter.prompt(q, think) for q in problems["question"]]
    completions = [
        prompter.completion(p, t, a, r, think)
        for p, t, a, r in zip(prompts, problems["trace"], problems["answer"], problems["reply"])
    ]
    return Dataset.from_dict({"prompt": prompts, "completion": completions})


def sft(run, seed, start, tokenizer, problems, out_dir, prompter, source, teacher_dir=None):
    """Supervised fine-tuning on the task's reference traces (or answers, think off)."""
    return _sft_trainer(run, seed, start, tokenizer, _prompt_completion(problems, run["think"], prompter), out_dir)


def distill(run, seed, start, tokenizer, problems, out_dir, prompter, source, teacher_dir=None):
    """SFT on traces sampled from the teacher (prompted with its own chat template) for the
    training problems, kept when the task's checker finds their answer right."""
    from sparks.data.answers import answer_checker
    from sparks.generate import generate
    from sparks.model.load import load_checkpoint

    settings = run["distill"]
    teacher_ref = teacher_dir if settings["teacher"] == "teacher" else settings["teacher"]
    if teacher_ref is None:
        raise ValueError(
            "this distill run uses the experiment's teacher: pass --teacher <folder from prepare-model --role teacher>"
        )
    teacher, teacher_tok = load_checkpoint(teacher_ref)
    asks = Prompter(teacher_tok, prompter.settings)
    questions = list(problems["question"]) * settings["samples_per_problem"]
    answers = list(problems["answer"]) * settings["samples_per_problem"]
    teacher_prompts = [asks.prompt(q, run["think"]) for q in questions]
    samples = generate(
        teacher,
        teacher_tok,
        teacher_prompts,
        settings["max_new_tokens"],
        temperature=settings["temperature"],
        seed=seed + run["seed"],
        progress=True,
    )
    check = answer_checker(source).is_correct  # the task's own checker (math-verify for hub sets)
    correct = [check(s, a) for s, a in zip(samples, answers)]
    log.info("teacher traces: %d sampled, %.1f %% correct", len(samples), 100 * sum(correct) / len(samples))
    prompts, completions = [], []
    for question, answer, teacher_prompt, sample, ok in zip(questions, answers, teacher_prompts, samples, correct):
        if not ok and settings["only_correct"]:
            continue
        prompt = prompter.prompt(question, run["think"])
        if not (asks.templated or prompter.templated):  # one plain format: the sample is the target
            prompts.append(prompt)
            completions.append(sample)
            continue
        parts = asks.split_sample(teacher_prompt, sample) if run["think"] else ("", sample.strip())
        if parts is not None:  # re-written in the student's own format
            prompts.append(prompt)
            completions.append(prompter.completion(prompt, parts[0], answer, parts[1], run["think"]))
    if not prompts:
        raise ValueError("no teacher trace was correct; set distill.only_correct: false or use a stronger teacher")
    examples = Dataset.from_dict({"prompt": prompts, "completion": completions})
    del teacher
    return _sft_trainer(run, seed, start, tokenizer, examples, out_dir)


def grpo(run, seed, start, tokenizer, problems, out_dir, prompter, source, teacher_dir=None):
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
    return GRPOTrainer(model=str(start), reward_funcs=funcs, args=args, train_dataset=dataset, processing_class=tokenizer)


METHODS: dict[str, Callable[..., Any]] = registry.implement(registry.METHODS, {"sft": sft, "grpo": grpo, "distill": distill})
