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


SAVE_DTYPES = ("float32", "bfloat16")  # runs.<name>.save_dtype


def cast_weights(folder: Path, dtype: str) -> bool:
    """Rewrite a saved model's safetensors with its floating-point tensors in ``dtype`` (and the
    dtype its config.json names), each file atomically; returns whether anything changed.
    A checkpoint that resume still needs keeps its float32 master weights: cast only the others."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    if dtype not in SAVE_DTYPES:
        raise ValueError(f"save dtype {dtype!r} is not one of {', '.join(SAVE_DTYPES)}")
    target = getattr(torch, dtype)
    float_names = {"F64", "F32", "F16", "BF16"}
    header_name = {"float32": "F32", "bfloat16": "BF16"}[dtype]
    changed = False
    for path in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(path, framework="pt") as f:  # the header only: nothing to do is cheap
            dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}  # noqa: SIM118 - a safe_open handle, not a dict
        if not (dtypes & float_names) - {header_name}:
            continue
        tensors = load_file(path)
        cast = {k: t.to(target) if t.is_floating_point() else t for k, t in tensors.items()}
        tmp = temp_sibling(path)
        save_file(cast, str(tmp), metadata={"format": "pt"})
        os.replace(tmp, path)
        changed = True
    config = Path(folder) / "config.json"
    if changed and config.is_file():
        values = json.loads(config.read_text())
        values["torch_dtype" if "torch_dtype" in values else "dtype"] = dtype
        tmp = temp_sibling(config)
        tmp.write_text(json.dumps(values, indent=2, sort_keys=True))
        os.replace(tmp, config)
    return changed
