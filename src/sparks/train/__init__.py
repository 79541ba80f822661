"""Train stage: TRL SFT, GRPO and distillation runs that save a checkpoint every N steps.

A run writes its ``checkpoint-{step}/`` folders (step 0 is the starting model) beside its
manifest (``checkpoints.json``, :mod:`sparks.manifest`), and ``train_log.parquet`` from the
trainer's log history. The manifest is written last, so a crashed run never looks finished, and
a rerun resumes from the last complete checkpoint (``sparks.train.resume``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparks.config import config_hash
from sparks.registry import GIVEN

if TYPE_CHECKING:
    from sparks.train.heads import HeadPolicy

log = logging.getLogger(__name__)


def training_problems(config: dict[str, Any], run_name: str, problems_path: Path):
    """The training problems of run ``run_name``: the task's train split, in the run's difficulties."""
    import polars as pl

    from sparks.tables import read_table

    run = config["runs"][run_name]
    problems = read_table(problems_path, "problems").filter(pl.col("split") == "train")
    if problems.is_empty():
        from sparks.data.hub import EVAL_ONLY

        task = config["tasks"][run["task"]]
        raise ValueError(
            f"runs.{run_name}.task {run['task']!r} has no training problems (source {task['source']!r}"
            f"{' is an evaluation set' if task['source'] in EVAL_ONLY else ''}); "
            "train on a task with a train split (synthetic, gsm8k, openr1)"
        )
    if run["difficulties"] is not None:
        problems = problems.filter(pl.col("difficulty").is_in(run["difficulties"]))
    return problems


def train_run(
    config: dict[str, Any],
    run_name: str,
    base_dir: Path | None,
    problems_path: Path | None,
    manifest_path: Path,
    train_log_path: Path,
    teacher_traces: Path | None = None,
    head_policy: HeadPolicy | None = None,
) -> Path:
    """Run ``runs.{run_name}`` of ``config`` from the model in ``base_dir`` on the task's problems
    (a distill run on the ``teacher_traces`` table of ``sparks teacher-traces``); checkpoints go
    beside ``manifest_path``, which is written last. Returns the manifest path. A ``models`` run
    trains nothing: its manifest is written from its given checkpoints (``sparks.train.given``).
    ``head_policy`` freezes, restricts or anchors heads while training (``sparks.train.heads``;
    errors name ``runs.{run_name}.heads``); without it a run's ``train_heads`` trains only those heads."""
    from sparks.manifest import write_manifest
    from sparks.methods import training_method
    from sparks.model.load import load_model, load_tokenizer, model_hash
    from sparks.model.store import resolve
    from sparks.tables import file_hash, with_provenance, write_table
    from sparks.train.heads import HeadPolicy, apply_head_policy
    from sparks.train.history import log_history_frame
    from sparks.train.resume import (
        CheckpointMarker,
        checkpoint_layout,
        complete_steps,
        finished_history,
        mark_complete,
        resume_point,
        retire,
        start_or_resume,
    )

    if run_name not in config["runs"]:
        raise KeyError(f"run {run_name!r} is not in the config's runs ({', '.join(config['runs'])}); add it under runs:")
    run = config["runs"][run_name]
    if run["method"] == GIVEN:
        from sparks.train.given import write_given_run

        return write_given_run(config, run_name, Path(manifest_path), Path(train_log_path))
    if base_dir is None or problems_path is None:
        raise ValueError(f"run {run_name!r} trains ({run['method']}): pass the base model folder and the problems table")
    from accelerate import PartialState

    processes = PartialState()  # one process, or each of accelerate launch's (resources.train.gpus)
    manifest_path = Path(manifest_path)
    out_dir = manifest_path.parent  # the run's folder: checkpoints beside the manifest
    identity = {
        "run": run_name,
        "settings": config_hash({"seed": config["seed"], "run": run}),
        "base": model_hash(base_dir),
        "teacher": None if teacher_traces is None else file_hash([Path(teacher_traces)]),
    }
    if head_policy is not None:  # the resolved head sets: other sets train afresh
        identity["heads"] = repr(head_policy)
    layout = checkpoint_layout(processes.distributed_type)  # what resume state its checkpoints hold
    start = out_dir / "checkpoint-0"
    problems = training_problems(config, run_name, problems_path)  # inputs first: a bad one writes nothing
    tokenizer = load_tokenizer(*resolve(base_dir))
    with processes.main_process_first():  # the main process cleans and saves step 0; the others then read
        resume = resume_point(out_dir, identity, run["max_steps"], layout)
        if processes.is_main_process:
            # The base's weights only to write step 0 (a resumed run has it), loaded before
            # anything is written; the trainer loads its own copy from checkpoint-0.
            base = load_model(*resolve(base_dir)) if resume is None else None
            out_dir.mkdir(parents=True, exist_ok=True)
            manifest_path.unlink(missing_ok=True)
            resume = start_or_resume(out_dir, identity, run["max_steps"], layout)
            if resume is None:
                base.save_pretrained(start)
                tokenizer.save_pretrained(start)
                mark_complete(start)
            del base  # not kept beside the trainer's copy through training

    history = finished_history(resume, run["max_steps"])
    if history is None:
        from sparks.data.prompting import Prompter

        source = config["tasks"][run["task"]]["source"]
        prompter = Prompter.of(tokenizer, config)
        build = training_method(run["method"]).build()  # sparks.methods: the run's method's trainer builder
        trainer = build(run, config["seed"], start, tokenizer, problems, out_dir, prompter, source, teacher_traces)
        if head_policy is not None:
            apply_head_policy(trainer, head_policy, f"runs.{run_name}.heads")
        elif run["train_heads"]:
            apply_head_policy(trainer, HeadPolicy(train_only=tuple(run["train_heads"])), f"runs.{run_name}.train_heads")
        trainer.add_callback(CheckpointMarker(out_dir, run["save_dtype"]))
        trainer.train(resume_from_checkpoint=None if resume is None else str(resume))
        history = trainer.state.log_history

    if not processes.is_main_process:
        return manifest_path  # the main process writes what the run leaves
    steps = complete_steps(out_dir)
    final = out_dir / f"checkpoint-{steps[-1]}"
    if finished_history(final, run["max_steps"]) is not None:
        for step in steps:  # the run is over: nothing will resume from the newest either (the rest retired as they aged)
            retire(out_dir / f"checkpoint-{step}", run["save_dtype"])
    for step in steps:  # checkpoints carry the tokenizer, so each loads on its own
        tokenizer.save_pretrained(out_dir / f"checkpoint-{step}")
    history = log_history_frame(history)
    train_log = with_provenance(
        history,
        experiment=config["experiment"],
        run=run_name,
        step=None,
        task=run["task"],
        model_hash=model_hash(start),
        config_hash=config_hash(run),
    )
    write_table(train_log, "train_log", train_log_path)
    folders = {s: f"checkpoint-{s}" for s in steps}
    write_manifest(manifest_path, run_name, run["method"], folders, {s: model_hash(out_dir / f) for s, f in folders.items()})
    log.info("run %s: checkpoints at steps %s", run_name, steps)
    return manifest_path
