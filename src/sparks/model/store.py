"""Where a stage finds a model: a folder with ``sparks_model.json`` naming its source.

An embedded model is saved in full inside the folder; a hub model is referenced by id (and
revision) so a 1.5B model is not copied into the experiment's folder. Both load the same way downstream.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping
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
_FLOAT_HEADERS = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16"}  # safetensors' names


def weight_dtypes(folder: Path) -> set[str]:
    """The dtypes (``float32``, ``bfloat16``, ...) of the floating-point tensors in a saved model's
    safetensors, read from their headers: what the folder holds, whatever its config.json says."""
    from safetensors import safe_open

    dtypes = set()
    for path in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(path, framework="pt") as f:  # the header only
            dtypes |= {f.get_slice(k).get_dtype() for k in f.keys()}  # noqa: SIM118 - a safe_open handle, not a dict
    return {_FLOAT_HEADERS[d] for d in dtypes if d in _FLOAT_HEADERS}


def cast_weights(folder: Path, dtype: str) -> bool:
    """Rewrite a saved model's safetensors with its floating-point tensors in ``dtype`` (and the
    dtype its config.json names), each file atomically; returns whether anything changed.
    A checkpoint that resume still needs keeps its master weights: cast only the others."""
    import torch

    if dtype not in SAVE_DTYPES:
        raise ValueError(f"save dtype {dtype!r} is not one of {', '.join(SAVE_DTYPES)}")
    if not weight_dtypes(folder) - {dtype}:  # the headers only: nothing to do is cheap
        return False
    target = getattr(torch, dtype)
    return _rewrite_weights(folder, lambda name, t: t.to(target) if t.is_floating_point() else t)


def replace_weights(folder: Path, tensors: Mapping[str, Any]) -> bool:
    """Rewrite a saved model's safetensors with the floating-point values of ``tensors`` (by name,
    each of the same shape; anything with a ``contiguous()`` that gives a tensor, so lazily
    gathered ones too) in their own dtype, each file atomically; returns whether anything changed.
    Tensors the files hold under other names stay as they are."""

    def new(name, t):
        if name not in tensors or not t.is_floating_point():
            return t
        value = tensors[name].contiguous()
        if tuple(value.shape) != tuple(t.shape):
            raise ValueError(f"{folder}: {name} has shape {tuple(t.shape)} on disk but {tuple(value.shape)} in the replacement")
        return value

    return _rewrite_weights(folder, new)


def _rewrite_weights(folder: Path, new: Callable[[str, Any], Any]) -> bool:
    """Rewrite each safetensors file of ``folder`` where ``new(name, tensor)`` returns another
    tensor for some name, atomically; then config.json names the folder's dtype, if it has one."""
    from safetensors.torch import load_file, save_file

    changed = False
    for path in sorted(Path(folder).glob("*.safetensors")):
        tensors = load_file(path)
        out = {k: new(k, t) for k, t in tensors.items()}
        if all(out[k] is t for k, t in tensors.items()):
            continue
        tmp = temp_sibling(path)
        save_file({k: t.contiguous() for k, t in out.items()}, str(tmp), metadata={"format": "pt"})
        os.replace(tmp, path)
        changed = True
    dtypes = weight_dtypes(folder)
    config = Path(folder) / "config.json"
    if changed and len(dtypes) == 1 and config.is_file():
        values = json.loads(config.read_text())
        values["torch_dtype" if "torch_dtype" in values else "dtype"] = dtypes.pop()
        tmp = temp_sibling(config)
        tmp.write_text(json.dumps(values, indent=2, sort_keys=True))
        os.replace(tmp, config)
    return changed
