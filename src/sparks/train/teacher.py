"""Teacher sampling for distillation, as its own cached stage (``sparks teacher-traces``).

The teacher answers every training problem of a distill run ``distill.samples_per_problem``
times, prompted in its own format (its chat template when it has one); each sample is checked
with the task's checker and split into trace and reply. The table records the teacher, the
prompt form and the sampling settings with every sample, so a distill retry or resume reads the
same traces instead of sampling again.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import polars as pl

from sparks.config import config_hash

log = logging.getLogger(__name__)
TRAINING_ONLY = (  # keys sampling ignores
    "max_steps",
    "save_steps",
    "learning_rate",
    "batch_size",
    "max_length",
    "gradient_checkpointing",
    "warmup_ratio",
    "train_heads",
    "grpo",
)


def sample_teacher_traces(
    config: dict[str, Any], run_name: str, problems_path: Path, teacher_dir: Path | None, out: Path
) -> Path:
    """Sample the teacher of distill run ``run_name`` on its training problems; write the
    teacher_traces table to ``out``. ``teacher_dir`` is the prepared model folder (prepare-model)
    that ``distill.teacher`` names by role: the experiment's teacher ("teacher"), or the run's own
    base ("base": self-distillation)."""
    from sparks.data.answers import answer_checker
    from sparks.data.prompting import Prompter
    from sparks.generate import GenerationSettings, generate, load_generator
    from sparks.model.load import model_hash
    from sparks.tables import with_provenance, write_table
    from sparks.train import training_problems

    run = config["runs"].get(run_name)
    if run is None or run["method"] != "distill":
        raise KeyError(f"run {run_name!r} is not a distill run of the config (distill runs: {_distill_runs(config)})")
    settings = run["distill"]
    role = settings["teacher"]
    teacher_ref = teacher_dir if role in ("teacher", "base") else role
    if teacher_ref is None:
        whose = "the experiment's teacher" if role == "teacher" else "its own base model"
        raise ValueError(f"runs.{run_name} distils from {whose}: pass --teacher <folder from prepare-model --role {role}>")
    problems = training_problems(config, run_name, problems_path)
    engine = GenerationSettings.from_config(config)
    teacher, tokenizer = load_generator(teacher_ref, engine)  # on vLLM the card is left to the engine
    asks = Prompter.of(tokenizer, config)
    n = settings["samples_per_problem"]
    questions, answers = list(problems["question"]) * n, list(problems["answer"]) * n
    prompts = [asks.prompt(q, run["think"]) for q in questions]
    samples = generate(
        teacher,
        tokenizer,
        prompts,
        settings["max_new_tokens"],
        temperature=settings["temperature"],
        seed=config["seed"] + run["seed"],
        progress=True,
        engine=engine,
    )
    check = answer_checker(config["tasks"][run["task"]]["source"]).is_correct
    parts = [asks.split_sample(p, s) if run["think"] else ("", s.strip()) for p, s in zip(prompts, samples)]
    table = pl.DataFrame(
        {
            "problem_id": list(problems["problem_id"]) * n,
            "sample": [k for k in range(n) for _ in range(problems.height)],
            "question": questions,
            "answer": answers,
            "prompt": prompts,
            "completion": samples,
            "trace": [None if p is None else p[0] for p in parts],
            "reply": [None if p is None else p[1] for p in parts],
            "correct": [check(asks.reply_text(p, s), a) for p, s, a in zip(prompts, samples, answers)],
        },
        schema_overrides={"trace": pl.String, "reply": pl.String},
    ).with_columns(
        pl.lit(str(teacher_ref)).alias("teacher"),
        pl.lit("chat_template" if asks.templated else "plain").alias("prompt_form"),
        pl.lit(run["think"]).alias("think"),
        pl.lit(float(settings["temperature"])).alias("temperature"),
        pl.lit(settings["max_new_tokens"], dtype=pl.Int64).alias("max_new_tokens"),
    )
    log.info(
        "teacher %s: %d samples, %.1f %% correct (kept with only_correct: %s)",
        teacher_ref,
        table.height,
        100 * table["correct"].mean(),
        settings["only_correct"],
    )
    provenance = dict(
        experiment=config["experiment"],
        run=run_name,
        step=None,
        task=run["task"],
        model_hash=model_hash(teacher_ref),
        config_hash=config_hash({"seed": config["seed"], "run": sampling_settings(run), "prompt": config["prompt"]}),
    )
    return write_table(with_provenance(table, **provenance), "teacher_traces", out)


def sampling_settings(run: dict[str, Any]) -> dict[str, Any]:
    """The keys of a distill run that its teacher samples depend on (not the training ones)."""
    return {k: v for k, v in run.items() if k not in TRAINING_ONLY}


def _distill_runs(config: dict[str, Any]) -> str:
    return ", ".join(name for name, run in config["runs"].items() if run["method"] == "distill") or "none"
