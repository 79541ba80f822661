"""Train stage: TRL SFT, GRPO and distillation runs that save a checkpoint every N steps.

A run's folder ``results/{exp}/runs/{run}/`` ends up with ``checkpoint-{step}/`` folders (step 0
is the starting model), ``train_log.parquet`` from the trainer's log history, and
``checkpoints.json``, the manifest that Snakemake reads to learn the steps. The manifest is
written last, so a crashed run never looks finished, and a rerun resumes from the last complete
checkpoint (``sparks.train.resume``).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from sparks.atomic import atomic_file
from sparks.config import add_config_argument, config_hash, load_config

log = logging.getLogger(__name__)
MANIFEST = "checkpoints.json"


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of a finished run: ``{"run", "steps", "checkpoints": {step: folder}}``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run the train stage for this run first (snakemake {path})")
    return json.loads(path.read_text())


def checkpoint_path(manifest_path: str | Path, step: int) -> Path:
    manifest = read_manifest(manifest_path)
    if step not in manifest["steps"]:
        steps = ", ".join(map(str, manifest["steps"]))
        raise KeyError(f"step {step} is not in {manifest_path} (steps: {steps}); ask for an existing step or raise max_steps")
    return Path(manifest_path).parent / f"checkpoint-{step}"


def train_run(
    config: dict[str, Any],
    run_name: str,
    base_dir: Path,
    data_dir: Path,
    out_dir: Path,
    teacher_dir: Path | None = None,
) -> Path:
    """Run ``runs.{run_name}`` of ``config`` from the model in ``base_dir``; returns the manifest path."""
    import polars as pl

    from sparks.model.load import load_checkpoint, model_hash
    from sparks.tables import read_table, with_provenance, write_table
    from sparks.train.history import log_history_frame
    from sparks.train.methods import METHODS
    from sparks.train.resume import (
        CheckpointMarker,
        complete_steps,
        drop_resume_state,
        finished_history,
        mark_complete,
        start_or_resume,
    )

    if run_name not in config["runs"]:
        raise KeyError(f"run {run_name!r} is not in the config's runs ({', '.join(config['runs'])}); add it under runs:")
    run = config["runs"][run_name]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST).unlink(missing_ok=True)
    identity = {
        "run": run_name,
        "settings": config_hash({"seed": config["seed"], "run": run}),
        "base": model_hash(base_dir),
        "teacher": None if teacher_dir is None else model_hash(teacher_dir),
    }
    resume = start_or_resume(out_dir, identity, run["max_steps"])

    model, tokenizer = load_checkpoint(base_dir)
    start = out_dir / "checkpoint-0"
    if resume is None:
        model.save_pretrained(start)
        tokenizer.save_pretrained(start)
        mark_complete(start)

    problems = read_table(Path(data_dir) / f"{run['task']}_problems.parquet", "problems").filter(pl.col("split") == "train")
    if run["difficulties"] is not None:
        problems = problems.filter(pl.col("difficulty").is_in(run["difficulties"]))
    history = finished_history(resume, run["max_steps"])
    if history is None:
        trainer = METHODS[run["method"]](run, config["seed"], start, tokenizer, problems, out_dir, teacher_dir)
        trainer.add_callback(CheckpointMarker(out_dir))
        trainer.train(resume_from_checkpoint=None if resume is None else str(resume))
        history = trainer.state.log_history

    steps = complete_steps(out_dir)
    final = out_dir / f"checkpoint-{steps[-1]}"
    if finished_history(final, run["max_steps"]) is not None:
        drop_resume_state(final)  # the run is over: nothing will resume from it
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
    write_table(train_log, "train_log", out_dir / "train_log.parquet")
    manifest = {
        "run": run_name,
        "method": run["method"],
        "steps": steps,
        "checkpoints": {str(s): f"checkpoint-{s}" for s in steps},
        "model_hashes": {str(s): model_hash(out_dir / f"checkpoint-{s}") for s in steps},
    }
    with atomic_file(out_dir / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2))
    log.info("run %s: checkpoints at steps %s", run_name, steps)
    return out_dir / MANIFEST


def make_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="post-train with TRL (sft | grpo | distill) and save checkpoints")
    add_config_argument(p)
    p.add_argument("--run", required=True, help="run name under runs: in the config")
    p.add_argument("--base", type=Path, required=True, help="model folder from prepare-model")
    p.add_argument("--data-dir", type=Path, required=True, help="folder with {task}_problems.parquet")
    p.add_argument(
        "--teacher", type=Path, default=None, help="teacher model folder (distill runs that use the experiment's teacher)"
    )
    p.add_argument("--out-dir", type=Path, required=True, help="run folder, e.g. results/embedded/runs/sft")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> None:
    train_run(load_config(args.config), args.run, args.base, args.data_dir, args.out_dir, args.teacher)
