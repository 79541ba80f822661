"""Crash-safe checkpoints: a run killed mid-training resumes from its last complete checkpoint.

A checkpoint counts only once the trainer has finished writing it: a callback then drops a
``.sparks-complete`` marker into the folder (atomically). A folder without the marker is a
half-written checkpoint and is deleted before anything reads it. Only the newest complete
checkpoint keeps the optimizer, scheduler and RNG state that resuming needs; older ones are
*retired* to the model alone, in ``runs.<name>.save_dtype`` (so a 1.5B run does not keep 12 GB
of Adam moments per checkpoint).

What resuming needs depends on how the run trains (``resources.train.strategy``,
``sparks.train.launch``). Beside the model's safetensors, config and ``trainer_state.json``,
transformers' ``Trainer._save_checkpoint`` writes into ``checkpoint-N/``:

- one process or DDP: ``optimizer.pt``, ``scheduler.pt``, ``scaler.pt`` (fp16 only) and
  ``rng_state.pth`` (``rng_state_{rank}.pth`` with several processes);
- DeepSpeed ZeRO-2/3: ``global_step{N}/`` (each rank's ``*_optim_states.pt``, which hold the
  float32 master weights and the Adam moments, and ``*_model_states.pt``), a ``latest`` file
  naming it, ``zero_to_fp32.py``, the RNG states, and ``scheduler.pt`` where the trainer and not
  DeepSpeed steps the scheduler. Under bf16 DeepSpeed holds the model itself in bf16, so the
  safetensors beside them are bf16;
- FSDP: ``optimizer.bin`` (FULL_STATE_DICT) or an ``optimizer_0/`` folder (sharded), the model
  once more as ``pytorch_model_fsdp.bin`` or ``pytorch_model_fsdp_0/`` (resume loads that copy,
  not the safetensors, which only FULL_STATE_DICT writes), ``scheduler.pt`` and the RNG states.

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
from sparks.model.store import cast_weights, replace_weights, weight_dtypes

log = logging.getLogger(__name__)

RUN_STATE = ".sparks-run.json"
COMPLETE = ".sparks-complete"

# The optimizer state each checkpoint layout writes (globs of files or folders): a checkpoint
# holding it can be resumed by a run of that layout (checkpoint_layout), and by no other.
OPTIMIZER_STATE = {
    "plain": ("optimizer.pt",),
    "fsdp": ("optimizer.bin", "optimizer_*"),  # FULL_STATE_DICT; a sharded folder optimizer_0/ or per-rank files
    "deepspeed": ("global_step*",),
}
# Everything a checkpoint holds only for resuming: dropped once a newer checkpoint is complete.
RESUME_STATE = (
    *(glob for globs in OPTIMIZER_STATE.values() for glob in globs),
    "latest",  # DeepSpeed: names the global_step folder to load
    "zero_to_fp32.py",  # DeepSpeed's script that rebuilds float32 weights from global_step*/
    "pytorch_model_fsdp*",  # FSDP's own copy of the model
    "scheduler.pt",
    "scaler.pt",
    "rng_state*.pth",
)
# Resume state that also holds the model: kept where no safetensors weights lie beside it (FSDP's
# sharded state dict, DeepSpeed ZeRO-3 without its 16-bit gather), so a checkpoint keeps its weights.
MODEL_STATE = ("global_step*", "latest", "zero_to_fp32.py", "pytorch_model_fsdp*")


def checkpoint_layout(distributed_type: str) -> str:
    """The checkpoint layout (a key of OPTIMIZER_STATE) of accelerate's ``distributed_type``."""
    return {"DEEPSPEED": "deepspeed", "FSDP": "fsdp"}.get(str(distributed_type), "plain")


def resume_layout(folder: Path) -> str | None:
    """The layout whose optimizer state ``folder`` holds, or None when it holds none."""
    for layout, globs in OPTIMIZER_STATE.items():
        if any(any(folder.glob(glob)) for glob in globs):
            return layout
    return None


def checkpoint_step(folder: Path) -> int:
    return int(folder.name.split("-")[1])


def complete_steps(out_dir: Path) -> list[int]:
    return sorted(checkpoint_step(p) for p in out_dir.glob("checkpoint-*") if (p / COMPLETE).is_file())


def mark_complete(folder: Path) -> None:
    with atomic_file(folder / COMPLETE) as tmp:
        tmp.write_text("")


def drop_resume_state(folder: Path) -> None:
    """Delete ``folder``'s resume state (files and folders), but never its only weights."""
    has_weights = any(folder.glob("*.safetensors"))
    for glob in RESUME_STATE:
        if glob in MODEL_STATE and not has_weights:
            continue
        for path in folder.glob(glob):
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def restore_master_weights(folder: Path) -> bool:
    """Under DeepSpeed with bf16 the saved weights are bf16, and the float32 master weights live
    only in ``global_step*/``: write those into the safetensors (DeepSpeed's own zero_to_fp32
    reconstruction). Returns whether it did; a checkpoint without them is left as it is."""
    if not (folder / "latest").is_file() or not any(folder.glob("global_step*")):
        return False
    if not weight_dtypes(folder) - {"float32"}:
        return False  # float32 already (or no safetensors to hold them)
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    log.info("%s: writing the float32 master weights from its DeepSpeed state", folder)
    masters = get_fp32_state_dict_from_zero_checkpoint(str(folder), lazy_mode=True)  # gathered one tensor at a time
    return replace_weights(folder, masters)


def retire(folder: Path, save_dtype: str) -> None:
    """Make ``folder`` a model-only checkpoint (nothing resumes from it any more) with its weights
    in ``save_dtype``. float32 means the master weights: under DeepSpeed they are rebuilt from its
    state before that is dropped. Weights that no state can make float32 stay as saved, and
    config.json and the safetensors headers say what they are."""
    trained = resume_layout(folder) is not None  # saved by the trainer, and not retired yet
    if save_dtype == "float32":
        restore_master_weights(folder)
    drop_resume_state(folder)
    if save_dtype != "float32":
        cast_weights(folder, save_dtype)
    elif trained and weight_dtypes(folder) - {"float32"}:
        log.warning("%s keeps %s weights: nothing in it held float32 ones", folder, ", ".join(sorted(weight_dtypes(folder))))


class CheckpointMarker(TrainerCallback):
    """Marks each checkpoint complete once saved, and keeps resume state only in the newest; the
    others are retired to model-only, their weights in ``save_dtype`` (runs.<name>.save_dtype)."""

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
                retire(self.out_dir / f"checkpoint-{step}", self.save_dtype)
        return control


def resume_point(out_dir: Path, identity: dict[str, Any], max_steps: int, layout: str = "plain") -> Path | None:
    """The checkpoint a run with this ``identity`` resumes from, without touching anything: the
    newest complete one of the same run, if training had finished there or it holds optimizer
    state of this ``layout`` (checkpoint_layout). None means start from step 0."""
    state_file = out_dir / RUN_STATE
    if not (state_file.is_file() and json.loads(state_file.read_text()) == identity):
        return None
    steps = [s for s in complete_steps(out_dir) if s > 0]
    if not steps:
        return None
    latest = out_dir / f"checkpoint-{steps[-1]}"
    if resume_layout(latest) == layout or finished_history(latest, max_steps) is not None:
        return latest
    return None


def start_or_resume(out_dir: Path, identity: dict[str, Any], max_steps: int, layout: str = "plain") -> Path | None:
    """Clean ``out_dir`` for a run with this ``identity``; returns the checkpoint to resume from
    (resume_point).

    Keeps complete checkpoints of the same run (deleting half-written ones); anything from other
    settings is removed, and so is everything when the newest checkpoint cannot be resumed (no
    optimizer state, or another layout's). None means start from step 0.
    """
    resume = resume_point(out_dir, identity, max_steps, layout)
    state_file = out_dir / RUN_STATE
    same_run = state_file.is_file() and json.loads(state_file.read_text()) == identity
    for folder in out_dir.glob("checkpoint-*"):
        if not same_run or not (folder / COMPLETE).is_file():
            shutil.rmtree(folder)
    if not same_run:
        with atomic_file(state_file) as tmp:
            tmp.write_text(json.dumps(identity, indent=2, sort_keys=True))
        return None
    if resume is not None:
        log.info("resuming from %s (complete checkpoints: %s)", resume, complete_steps(out_dir))
        return resume
    steps = [s for s in complete_steps(out_dir) if s > 0]
    if steps:
        latest = out_dir / f"checkpoint-{steps[-1]}"
        found = resume_layout(latest)
        log.warning(
            "%s has %s; starting the run afresh",
            latest,
            f"{found} optimizer state, and this run trains as {layout}" if found else "no optimizer state to resume from",
        )
        for folder in out_dir.glob("checkpoint-*"):
            shutil.rmtree(folder)
    return None


def finished_history(checkpoint: Path | None, max_steps: int) -> list[dict[str, Any]] | None:
    """The log history saved with ``checkpoint`` if training had reached ``max_steps`` there."""
    if checkpoint is None or not (checkpoint / "trainer_state.json").is_file():
        return None
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    return state["log_history"] if state["global_step"] >= max_steps else None
