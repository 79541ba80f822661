"""Where models come from, without loading one: a hub id or a local folder, its weight files, and
the checkpoints that already exist, named by a run with ``method: models`` (released models, or a
run trained elsewhere): finding them and checking that they can be read. Light (no torch): the
config check and the workflow graph call it.

A run gives a list of ``{step, source, revision}`` (a local model folder or a hub id) or the folder
of ``checkpoint-N/`` subfolders a Hugging Face Trainer (TRL, open-r1) leaves. The config check
calls :func:`given_checkpoints`, so a missing or unreadable local checkpoint fails before any job,
naming its path; a hub id is looked up in the local cache by the run's train job (its first), so
that a config plans offline on a machine that has not downloaded it yet. The train stage writes
the run's manifest from them (``sparks.train.given``).

The architectures sparks can attribute are listed here once (``SUPPORTED_MODEL_TYPES``): a local
base or checkpoint of another ``model_type`` fails the config check, a hub model its attribute job.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ModelError(RuntimeError):
    """A model or tokenizer that cannot be loaded: one line naming its source and what to do."""


# The architectures whose forward sparks.attribute.edgewise rebuilds node by node, and on which
# the exactness tests run (tests/conftest.py ``tiny_architecture_dir``): each has RMSNorm
# pre-norm blocks, rotate-half RoPE, grouped-query attention and ``model.model.layers[i].self_attn``
# with q/k/v/o projections. Qwen3 adds per-head q/k RMSNorm before RoPE; Llama and Qwen3 may
# carry an o_proj bias. Another architecture is refused before a job runs (check_model_type).
SUPPORTED_MODEL_TYPES = ("qwen2", "qwen3", "llama")


def check_model_type(config_json: dict[str, Any], where: str, error: type[Exception] = ValueError) -> None:
    """Refuse a model (its config.json as a dict, named by ``where``) whose forward the
    attribution graph does not rebuild exactly: an architecture outside SUPPORTED_MODEL_TYPES, or
    sliding-window attention. Raises ``error`` (the caller's one-line kind: ConfigError at config
    time, ModelError at load time). Light: no torch."""
    model_type = config_json.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise error(
            f"{where}: model_type {model_type!r} is not supported; sparks attributes {', '.join(SUPPORTED_MODEL_TYPES)} "
            "models (the architectures whose forward its attribution graph rebuilds); give a model of one of those"
        )
    if config_json.get("use_sliding_window"):
        raise error(
            f"{where}: sliding-window attention (use_sliding_window: true) is not supported by the attribution graph; "
            "give a model that attends to every earlier position"
        )


def check_model_source(source: str, where: str, error: type[Exception] = ValueError) -> None:
    """:func:`check_model_type` on a model source's config.json when it is a local folder that has
    one; an embedded model is a Qwen2, and a hub id is checked when its job loads it (configs
    must plan offline)."""
    config = Path(source).expanduser() / "config.json"
    if source != "embedded" and config.is_file():
        check_model_type(json.loads(config.read_text()), where, error)


CHECKPOINT_DIR = re.compile(r"checkpoint-(\d+)")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def is_hub_id(source: str) -> bool:
    """Whether ``source`` (a model, tokenizer or data set) has the shape of a hub id (``org/name``)
    rather than a local path."""
    parts = source.split("/")
    return len(parts) == 2 and all(parts) and not source.startswith((".", "/", "~"))


def weight_files(folder: Path) -> list[Path]:
    """A model folder's weight files: safetensors, else legacy ``pytorch_model*.bin``."""
    return sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))


@dataclass(frozen=True)
class Given:
    step: int
    source: str  # an absolute local folder or a hub id
    revision: str | None
    local: bool


def given_checkpoints(spec: str | list[dict[str, Any]], key: str) -> list[Given]:
    """The checkpoints ``spec`` (the run's ``checkpoints`` value, config key ``key``) names, by
    step; a local folder is checked to hold config.json, weights and a tokenizer. Raises
    ValueError naming the path and the fix."""
    if isinstance(spec, str):
        folder = Path(spec).expanduser()
        if not folder.is_dir():
            raise ValueError(
                f"config key {key} = {spec!r}: no such folder; give the folder that holds the checkpoint-N/ subfolders"
            )
        found = [(int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := CHECKPOINT_DIR.fullmatch(p.name))]
        if not found:
            raise ValueError(
                f"config key {key} = {spec!r}: the folder holds no checkpoint-N/ subfolders (as a Hugging Face Trainer "
                "saves them); list the checkpoints instead as {step, source} items"
            )
        items = [Given(step, str(path.resolve()), None, True) for step, path in found]
    else:
        items = [_item(entry, f"{key}[{i}]") for i, entry in enumerate(spec)]
        steps = [item.step for item in items]
        if len(set(steps)) != len(steps):
            raise ValueError(f"config key {key} gives step {max(steps, key=steps.count)} twice; give each step once")
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
    raise ValueError(f"config key {key}.source = {source!r}: no such folder (nor a hub id); give a model folder or a hub id")


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
        raise ValueError(
            f"config key {key}: checkpoint {folder} (step {item.step}) has no {' and no '.join(missing)}; "
            "save the model and its tokenizer there with save_pretrained"
        )
    check_model_source(str(folder), f"config key {key}: checkpoint {folder} (step {item.step})")


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
