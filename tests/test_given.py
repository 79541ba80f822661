"""Runs of checkpoints that already exist (method: models): finding them, refusing unreadable ones
before any job, and the manifest and train_log the train stage writes from them."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from sparks.config import ConfigError, check_config
from sparks.manifest import read_manifest
from sparks.model.load import load_checkpoint, model_hash
from sparks.sources import given_checkpoints
from sparks.tables import read_table
from sparks.train import train_run

HISTORY = [
    {"step": 1, "loss": 0.9, "reward": 0.25, "learning_rate": 1e-6},
    {"step": 2, "loss": 0.7, "reward": 0.5, "learning_rate": 1e-6},
    {"train_runtime": 12.0, "step": 2},
]


def trainer_folder(root: Path, source: Path, steps: tuple[int, ...]) -> Path:
    """``checkpoint-N/`` subfolders as a Trainer leaves them (with trainer_state.json), plus the
    clutter a run folder holds."""
    for step in steps:
        shutil.copytree(source, root / f"checkpoint-{step}")
        state = {"global_step": step, "log_history": [h for h in HISTORY if h["step"] <= step]}
        (root / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps(state))
    (root / "runs").mkdir()
    (root / "README.md").write_text("a model card")
    return root


def hub_cache_with_model(cache: Path, repo_id: str, source: Path) -> str:
    """A model laid out as `huggingface-cli download` leaves it (blobs, snapshot links, refs/main)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    for file in source.iterdir():
        data = file.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / commit / file.name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return commit


@pytest.fixture
def config(raw_config):
    raw = copy.deepcopy(raw_config)
    raw["runs"] = {"given": {"method": "models", "checkpoints": None}}
    return raw


def test_a_trainer_folder_gives_its_checkpoints_by_step(tmp_path, tiny_model_dir):
    folder = trainer_folder(tmp_path / "run", tiny_model_dir, (10, 2, 0))
    items = given_checkpoints(str(folder), "runs.x.checkpoints")
    assert [i.step for i in items] == [0, 2, 10]  # by number, not by name
    assert [Path(i.source) for i in items] == [folder.resolve() / f"checkpoint-{s}" for s in (0, 2, 10)]
    assert all(i.local and i.revision is None for i in items)


def test_unreadable_checkpoints_fail_the_config_check_naming_the_path(tmp_path, tiny_model_dir, config):
    empty = tmp_path / "empty"
    empty.mkdir()
    no_weights = tmp_path / "no_weights"
    shutil.copytree(tiny_model_dir, no_weights)
    (no_weights / "model.safetensors").unlink()
    no_tokenizer = tmp_path / "no_tokenizer"
    shutil.copytree(tiny_model_dir, no_tokenizer)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (no_tokenizer / name).unlink()
    cases = [
        (str(tmp_path / "nowhere"), "no such folder"),
        (str(empty), "holds no checkpoint-N/ subfolders"),
        ([{"step": 0, "source": str(no_weights)}], f"checkpoint {no_weights} (step 0) has no weights"),
        ([{"step": 0, "source": str(no_tokenizer)}], f"checkpoint {no_tokenizer} (step 0) has no tokenizer"),
        ([{"step": 3, "source": str(tiny_model_dir)}, {"step": 3, "source": str(tiny_model_dir)}], "gives step 3 twice"),
    ]
    for spec, message in cases:
        config["runs"]["given"]["checkpoints"] = spec
        with pytest.raises(ConfigError, match="runs.given.checkpoints") as err:
            check_config(config)
        assert message in str(err.value)
    config["runs"]["given"]["checkpoints"] = None
    with pytest.raises(ConfigError, match="a run with method models needs its checkpoints"):
        check_config(config)
    config["runs"]["given"] = {"method": "sft", "checkpoints": str(tiny_model_dir)}
    with pytest.raises(ConfigError, match="only runs with method models name their checkpoints"):
        check_config(config)


def test_the_manifest_points_at_the_given_checkpoints_and_hashes_their_weights(tmp_path, tiny_model_dir, config, monkeypatch):
    """A trainer folder and a list mixing a plain local folder and a cached hub id."""
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    commit = hub_cache_with_model(cache, "sparks-test/released", tiny_model_dir)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    folder = trainer_folder(tmp_path / "elsewhere", tiny_model_dir, (0, 2))
    plain = tmp_path / "plain"
    shutil.copytree(tiny_model_dir, plain)
    config["runs"]["listed"] = {
        "method": "models",
        "checkpoints": [{"step": 5, "source": "sparks-test/released"}, {"step": 0, "source": str(plain)}],
    }
    config["runs"]["given"]["checkpoints"] = str(folder)
    checked = check_config(config)
    out = tmp_path / "results"
    tree = read_manifest(train_run(checked, "given", None, None, out / "given" / "checkpoints.json", out / "given.parquet"))
    listed = read_manifest(train_run(checked, "listed", None, None, out / "listed" / "checkpoints.json", out / "listed.parquet"))
    assert tree.steps == (0, 2) and listed.steps == (0, 5) and tree.method == listed.method == "models"
    weights = model_hash(tiny_model_dir)
    assert set(tree.hashes.values()) == set(listed.hashes.values()) == {weights}
    assert model_hash(cache / "models--sparks-test--released" / "snapshots" / commit) == weights
    for manifest in (tree, listed):
        for step in manifest.steps:
            folder_of_step = manifest.checkpoint(step)
            assert not list(folder_of_step.glob("*.safetensors"))  # a pointer, nothing copied
            model, tokenizer = load_checkpoint(folder_of_step, device="cpu")
            assert model.config.num_hidden_layers == 2 and tokenizer.pad_token is not None
    log = read_table(out / "given.parquet", "train_log")
    assert log["step"].to_list() == [1, 2] and log["reward"].to_list() == [0.25, 0.5]  # the last checkpoint's history
    assert read_table(out / "listed.parquet", "train_log").height == 0  # no trainer_state.json: no rows


def test_an_uncached_hub_id_plans_but_its_train_job_names_the_download(tmp_path, config, monkeypatch):
    """Configs must plan offline, so the hub cache is read by the run's train job, its first."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    config["runs"]["given"]["checkpoints"] = [{"step": 0, "source": "sparks-test/absent", "revision": "v1"}]
    checked = check_config(config)
    with pytest.raises(FileNotFoundError, match=r"`huggingface-cli download sparks-test/absent --revision v1`"):
        train_run(checked, "given", None, None, tmp_path / "run" / "checkpoints.json", tmp_path / "log.parquet")
    assert not (tmp_path / "run" / "checkpoints.json").exists()
