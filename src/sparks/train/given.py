"""Runs of checkpoints that already exist (``runs.<name>.method: models``).

Released models, or a run trained elsewhere (HF Trainer, TRL, open-r1, verl exported to HF
format): the run names its checkpoints instead of training them, as a list of
``{step, source, revision}`` (a local model folder or a hub id) or as the folder of
``checkpoint-N/`` subfolders a Trainer leaves. The train stage writes the run's manifest from
them: per step a pointer folder ``checkpoint-{step}/`` (``sparks_model.json`` naming the source,
so no model is copied) and the hash of its weights, and the ``train_log`` from the trainer's log
history when the last local checkpoint carries one (``trainer_state.json``; else no rows). Every
later stage reads the manifest as for a trained run.

The config check calls :func:`given_checkpoints`, so a missing or unreadable local checkpoint
fails before any job, naming its path. A hub id is looked up in the local cache by the run's train
job (its first), so that a config plans offline on a machine that has not downloaded it yet.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparks.config import ConfigError, config_hash, is_hub_id
from sparks.model.store import weight_files

log = logging.getLogger(__name__)
METHOD = "models"
CHECKPOINT_DIR = re.compile(r"checkpoint-(\d+)")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


@dataclass(frozen=True)
class Given:
    step: int
    source: str  # an absolute local folder or a hub id
    revision: str | None
    local: bool


def given_checkpoints(spec: str | list[dict[str, Any]], key: str) -> list[Given]:
    """The checkpoints ``spec`` (the run's ``checkpoints`` value, config key ``key``) names, by
    step; a local folder is checked to hold config.json, weights and a tokenizer. Raises
    ConfigError naming the path and the fix."""
    if isinstance(spec, str):
        folder = Path(spec).expanduser()
        if not folder.is_dir():
            raise ConfigError(
                f"config key {key} = {spec!r}: no such folder; give the folder that holds the checkpoint-N/ subfolders"
            )
        found = [(int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := CHECKPOINT_DIR.fullmatch(p.name))]
        if not found:
            raise ConfigError(
                f"config key {key} = {spec!r}: the folder holds no checkpoint-N/ subfolders (as a Hugging Face Trainer "
                "saves them); list the checkpoints instead as {step, source} items"
            )
        items = [Given(step, str(path.resolve()), None, True) for step, path in found]
    else:
        items = [_item(entry, f"{key}[{i}]") for i, entry in enumerate(spec)]
        steps = [item.step for item in items]
        if len(set(steps)) != len(steps):
            raise ConfigError(f"config key {key} gives step {max(steps, key=steps.count)} twice; give each step once")
    for item in items:
        _check_readable(item, key)
    return sorted(items, key=lambda item: item.step)


def _item(entry: dict[str, Any], key: str) -> Given:
    source = entry["source"]
    path = Path(source).expanduser()
    if path.exists():
        return Given(entry["step"], str(path.resolve()), entry.get("revision"), True)
    if is_hub_id(source):
        return Given(entry["step"], source, entry.get("revision"), False)
    raise ConfigError(f"config key {key}.source = {source!r}: no such folder (nor a hub id); give a model folder or a hub id")


def _check_readable(item: Given, key: str) -> None:
    if not item.local:  # looked up in the cache by the run's train job (configs must plan offline)
        return
    folder = Path(item.source)
    missing = [
        what
        for what, present in (
            ("config.json", (folder / "config.json").is_file()),
            ("weights (*.safetensors or pytorch_model*.bin)", bool(weight_files(folder))),
            ("tokenizer (tokenizer.json or tokenizer_config.json)", any((folder / f).is_file() for f in TOKENIZER_FILES)),
        )
        if not present
    ]
    if missing:
        raise ConfigError(
            f"config key {key}: checkpoint {folder} (step {item.step}) has no {' and no '.join(missing)}; "
            "save the model and its tokenizer there with save_pretrained"
        )


def weights_folder(item: Given, key: str) -> Path:
    """The folder that holds the checkpoint's weights (a hub id's snapshot in the local cache)."""
    if item.local:
        return Path(item.source)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(item.source, revision=item.revision, local_files_only=True))
    except LocalEntryNotFoundError:
        revision = "" if item.revision is None else f" --revision {item.revision}"
        raise FileNotFoundError(
            f"{key}: step {item.step}, {item.source!r}, is not in the local Hugging Face cache; on a machine with "
            f"network run `huggingface-cli download {item.source}{revision}` once"
        ) from None


def input_files(spec: str | list[dict[str, Any]] | None, key: str) -> list[str]:
    """The given local checkpoints' config.json files: the train job's inputs, so a checkpoint
    saved again (or one more in the folder) makes the run's manifest be written again."""
    if spec is None:
        return []
    return [str(Path(item.source) / "config.json") for item in given_checkpoints(spec, key) if item.local]


def write_given_run(config: dict[str, Any], run_name: str, manifest_path: Path, train_log_path: Path) -> Path:
    """Write the manifest and train_log of the given run ``run_name``; returns the manifest path."""
    from sparks.manifest import write_manifest
    from sparks.model.load import model_hash
    from sparks.model.store import replace_dir, temp_dir_for, write_pointer
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
    return write_manifest(manifest_path, run_name, METHOD, folders, hashes)
