"""The train stage's part in runs of checkpoints that already exist (``runs.<name>.method:
models``; which checkpoints, and their checks: :mod:`sparks.sources`). It writes the run's
manifest from them: per step a pointer folder ``checkpoint-{step}/`` (``sparks_model.json`` naming the source,
so no model is copied) and the hash of its weights, and the ``train_log`` from the trainer's log
history when the last local checkpoint carries one (``trainer_state.json``; else no rows). Every
later stage reads the manifest as for a trained run.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from sparks.config import config_hash
from sparks.registry import GIVEN

log = logging.getLogger(__name__)


def write_given_run(config: dict[str, Any], run_name: str, manifest_path: Path, train_log_path: Path) -> Path:
    """Write the manifest and train_log of the given run ``run_name``; returns the manifest path."""
    from sparks.manifest import write_manifest
    from sparks.model.load import model_hash
    from sparks.model.store import replace_dir, temp_dir_for, write_pointer
    from sparks.sources import given_checkpoints, weights_folder
    from sparks.tables import with_provenance, write_table
    from sparks.train.history import log_history_frame

    run = config["runs"][run_name]
    items = given_checkpoints(run["checkpoints"], f"runs.{run_name}.checkpoints")
    out_dir = Path(manifest_path).parent
    out_dir.mkdir(parents=True, exist_ok=True)
    Path(manifest_path).unlink(missing_ok=True)
    folders, hashes = {}, {}
    for item in items:
        folder = out_dir / f"checkpoint-{item.step}"
        tmp = temp_dir_for(folder)
        write_pointer(tmp, item.source, item.revision, given=True)
        replace_dir(tmp, folder)
        folders[item.step] = folder.name
        hashes[item.step] = model_hash(weights_folder(item, f"runs.{run_name}.checkpoints"))
        log.info(
            "step %d: %s%s (weights %s)", item.step, item.source, f"@{item.revision}" if item.revision else "", hashes[item.step]
        )
    state = next((Path(i.source) / "trainer_state.json" for i in reversed(items) if i.local), None)
    history = json.loads(state.read_text())["log_history"] if state is not None and state.is_file() else []
    log.info("train_log: %d logged steps%s", len(history), f" from {state}" if history else " (no trainer_state.json)")
    train_log = with_provenance(
        log_history_frame(history),
        experiment=config["experiment"],
        run=run_name,
        step=None,
        task=run["task"],
        model_hash=hashes[items[0].step],
        config_hash=config_hash(run),
    )
    write_table(train_log, "train_log", train_log_path)
    return write_manifest(manifest_path, run_name, GIVEN, folders, hashes)
