"""Crash-safe checkpoints: a run killed mid-training resumes from its last complete checkpoint.

A checkpoint counts only once the trainer has finished writing it: a callback then drops a
``.sparks-complete`` marker into the folder (atomically). A folder without the marker is a
half-written checkpoint and is deleted before anything reads it. Only the newest complete
checkpoint keeps the optimizer, scheduler and RNG state that resuming needs (older ones are
pruned to the model, so a 1.5B run does not keep 12 GB of Adam moments per checkpoint).

``.sparks-run.json`` records what the folder's checkpoints were trained from (run settings, seed,
base model): a rerun with other settings starts afresh instead of resuming someone else's run.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from sparks.atomic import atomic_file
from sparks.model.store import cast_weights

log = logging.getLogger(__name__)

RUN_STATE = ".sparks-run.json"
COMPLETE = ".sparks-complete"
RESUME_FILES = ("optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state*.pth")


def checkpoint_step(folder: Path) -> int:
    return int(folder.name.split("-")[1])


def complete_steps(out_dir: Path) -> list[int]:
    return sorted(checkpoint_step(p) for p in out_dir.glob("checkpoint-*") if (p / COMPLETE).is_file())


def mark_complete(folder: Path) -> None:
    with atomic_file(folder / COMPLETE) as tmp:
        tmp.write_text("")


def drop_resume_state(folder: Path) -> None:
    for pattern in RESUME_FILES:
        for path in folder.glob(pattern):
            path.unlink()


class CheckpointMarker(TrainerCallback):
    """Marks each checkpoint complete once saved, and keeps resume state only in the newest; the
    others are model-only, their weights in ``save_dtype`` (runs.<name>.save_dtype)."""

    def __init__(self, out_dir: Path, save_dtype: str = "float32"):
        self.out_dir = out_dir
        self.save_dtype = save_dtype

    def on_save(self, args, state, control, **kwargs):
        if not getattr(state, "is_world_process_zero", True):
            return control  # several processes: the first one saved, and it alone marks
        folder = self.out_dir / f"checkpoint-{state.global_step}"
        mark_complete(folder)
        for step in complete_steps(self.out_dir):
            if step != state.global_step:
                drop_resume_state(self.out_dir / f"checkpoint-{step}")
                if self.save_dtype != "float32":  # the trainer saves float32: nothing else to do then
                    cast_weights(self.out_dir / f"checkpoint-{step}", self.save_dtype)
        return control


def start_or_resume(out_dir: Path, identity: dict[str, Any], max_steps: int) -> Path | None:
    """Clean ``out_dir`` for a run with this ``identity``; returns the checkpoint to resume from.

    Keeps complete checkpoints of the same run (deleting half-written ones) and returns the
    newest one that has resume state or that training already finished at; anything from other
    settings is removed, and None means start from step 0.
    """
    state_file = out_dir / RUN_STATE
    same_run = state_file.is_file() and json.loads(state_file.read_text()) == identity
    for folder in out_dir.glob("checkpoint-*"):
        if not same_run or not (folder / COMPLETE).is_file():
            shutil.rmtree(folder)
    if not same_run:
        with atomic_file(state_file) as tmp:
            tmp.write_text(json.dumps(identity, indent=2, sort_keys=True))
        return None
    steps = [s for s in complete_steps(out_dir) if s > 0]
    if not steps:
        return None
    latest = out_dir / f"checkpoint-{steps[-1]}"
    if (latest / "optimizer.pt").is_file() or finished_history(latest, max_steps) is not None:
        log.info("resuming from %s (complete checkpoints: %s)", latest, complete_steps(out_dir))
        return latest
    log.warning("%s has no optimizer state to resume from; starting the run afresh", latest)
    for folder in out_dir.glob("checkpoint-*"):
        shutil.rmtree(folder)
    return None


def finished_history(checkpoint: Path | None, max_steps: int) -> list[dict[str, Any]] | None:
    """The log history saved with ``checkpoint`` if training had reached ``max_steps`` there."""
    if checkpoint is None or not (checkpoint / "trainer_state.json").is_file():
        return None
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    return state["log_history"] if state["global_step"] >= max_steps else None
