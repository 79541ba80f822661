"""Where a stage finds a model: a folder with ``sparks_model.json`` naming its source.

An embedded model is saved in full inside the folder; a hub model is referenced by id (and
revision) so a 1.5B model is not copied into the experiment's folder. Both load the same way downstream.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from sparks.atomic import temp_sibling

POINTER = "sparks_model.json"


def write_pointer(folder: Path, source: str, revision: str | None, **extra: Any) -> None:
    (folder / POINTER).write_text(json.dumps({"source": source, "revision": revision, **extra}, indent=2))


def resolve(folder: str | Path) -> tuple[str, str | None]:
    """(source, revision) of a model folder made by prepare, or of any HF folder / hub id."""
    folder = Path(folder)
    pointer = folder / POINTER
    if pointer.is_file():
        meta = json.loads(pointer.read_text())
        source = meta["source"]
        return (str(folder) if source == "." else source), meta.get("revision")
    return str(folder), None


def is_hub_id(source: str) -> bool:
    """Whether ``source`` has the shape of a hub id (``org/name``) rather than a local path."""
    parts = source.split("/")
    return len(parts) == 2 and all(parts) and not source.startswith((".", "/", "~"))


def weight_files(folder: Path) -> list[Path]:
    """A model folder's weight files: safetensors, else legacy ``pytorch_model*.bin``."""
    return sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))


def replace_dir(tmp: Path, final: Path) -> None:
    """Move a fully written ``tmp`` folder to ``final`` (replacing it), so readers never see half."""
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old)
    else:
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)


def temp_dir_for(final: Path) -> Path:
    tmp = temp_sibling(final)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return tmp
