"""A run's manifest (``checkpoints.json``): its steps, checkpoint folders and their model hashes.

The train stage writes it last, so a run that has a manifest is finished; every later stage
takes checkpoint folders and hashes from it instead of naming folders or hashing weights again.
A checkpoint folder is stored relative to the manifest's folder (``checkpoint-30``, where the
trainer writes it) or as an absolute path (checkpoints that live elsewhere). The file is checked
against :data:`SCHEMA` whenever it is read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import jsonschema

from sparks.atomic import atomic_file

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["run", "method", "steps", "checkpoints", "model_hashes"],
    "properties": {
        "run": {"type": "string", "minLength": 1},
        "method": {"type": "string", "description": "the training method (a name in sparks.methods.method_names())"},
        "steps": {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1, "uniqueItems": True},
        "checkpoints": {"type": "object", "additionalProperties": {"type": "string", "minLength": 1}},
        "model_hashes": {"type": "object", "additionalProperties": {"type": "string", "minLength": 1}},
    },
}


@dataclass(frozen=True)
class Manifest:
    path: Path  # the checkpoints.json this was read from
    run: str
    method: str
    steps: tuple[int, ...]  # ascending; the first is the starting model
    folders: dict[int, str]  # step -> checkpoint folder, relative to path's folder or absolute
    hashes: dict[int, str]  # step -> model hash (provenance column model_hash)

    def _check_step(self, step: int) -> None:
        if step not in self.steps:
            steps = ", ".join(map(str, self.steps))
            raise KeyError(f"step {step} is not in {self.path} (steps: {steps}); ask for an existing step or raise max_steps")

    def checkpoint(self, step: int) -> Path:
        """The folder of checkpoint ``step`` (model, tokenizer)."""
        self._check_step(step)
        return self.path.parent / self.folders[step]  # an absolute folder stays itself

    def model_hash(self, step: int) -> str:
        self._check_step(step)
        return self.hashes[step]


class ManifestError(ValueError):
    """A manifest that cannot be read or does not hold together: one line naming it and the fix."""


def read_manifest(path: str | Path) -> Manifest:
    """Read and check a manifest; a missing file or a bad one is an error that says what to do."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run the train stage for this run first (snakemake {path})")
    try:
        data = json.loads(path.read_text())
        jsonschema.validate(data, SCHEMA)
    except (UnicodeDecodeError, json.JSONDecodeError, jsonschema.ValidationError) as err:
        message = err.message if isinstance(err, jsonschema.ValidationError) else str(err)
        raise ManifestError(f"{path} is not a valid sparks manifest ({message}); rerun its train job") from None
    steps = tuple(data["steps"])
    for key in ("checkpoints", "model_hashes"):
        if sorted(data[key]) != sorted(map(str, steps)):
            raise ManifestError(f"{path}: {key} must list exactly the steps {list(steps)}; rerun its train job")
    if list(steps) != sorted(steps):
        raise ManifestError(f"{path}: steps must be ascending, got {list(steps)}; rerun its train job")
    return Manifest(
        path=path,
        run=data["run"],
        method=data["method"],
        steps=steps,
        folders={s: data["checkpoints"][str(s)] for s in steps},
        hashes={s: data["model_hashes"][str(s)] for s in steps},
    )


def write_manifest(path: str | Path, run: str, method: str, folders: dict[int, str], hashes: dict[int, str]) -> Path:
    """Write a manifest atomically (checked against SCHEMA first); ``folders`` relative to its folder."""
    steps = sorted(folders)
    data = {
        "run": run,
        "method": method,
        "steps": steps,
        "checkpoints": {str(s): folders[s] for s in steps},
        "model_hashes": {str(s): hashes[s] for s in steps},
    }
    jsonschema.validate(data, SCHEMA)
    path = Path(path)
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2))
    return path
