"""Each training method, for a few steps on a random tiny model: checkpoints, manifest, log."""

from __future__ import annotations

import json

import pytest

from sparks.config import check_config
from sparks.prepare import prepare_data
from sparks.tables import read_table
from sparks.train import checkpoint_path, read_manifest, train_run


@pytest.fixture(scope="module")
def small_config():
    import yaml

    from conftest import REPO

    raw = yaml.safe_load((REPO / "workflow_config.yaml").read_text())
    raw["tasks"]["arith"].update(n_train=48, n_eval=4, n_pairs=4)
    for run in raw["runs"].values():
        run.update(max_steps=4, save_steps=2, batch_size=8)
    raw["runs"]["grpo"]["grpo"].update(num_generations=4, max_completion_length=12)
    raw["runs"]["distill"]["distill"].update(max_new_tokens=12)
    return check_config(raw)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, small_config, tiny_model_dir):
    out = tmp_path_factory.mktemp("data")
    prepare_data(small_config, "arith", tiny_model_dir, out)
    return out


@pytest.mark.parametrize("run", ["sft", "grpo", "distill"])
def test_train_run_saves_checkpoints_manifest_and_log(run, small_config, data_dir, tiny_model_dir, tmp_path):
    manifest_path = train_run(small_config, run, tiny_model_dir, data_dir, tmp_path / run, teacher_dir=tiny_model_dir)
    manifest = read_manifest(manifest_path)
    assert manifest["steps"] == [0, 2, 4]
    log = read_table(tmp_path / run / "train_log.parquet", "train_log")
    hashes = manifest["model_hashes"]
    if run == "grpo":  # a random model learns only from groups whose rewards differ (else every advantage is 0)
        assert (hashes["4"] != hashes["0"]) == (log["frac_reward_zero_std"].min() < 1)
    else:
        assert len(set(hashes.values())) == 3
    assert (checkpoint_path(manifest_path, 4) / "tokenizer.json").is_file()
    assert log["step"].to_list() == [1, 2, 3, 4]
    assert log["loss"].null_count() == 0
    if run == "grpo":
        assert log["reward"].null_count() == 0 and log["reward_correctness"].null_count() == 0
    with pytest.raises(KeyError, match=r"step 3 is not in .* \(steps: 0, 2, 4\)"):
        checkpoint_path(manifest_path, 3)


def test_rerun_replaces_stale_checkpoints(small_config, data_dir, tiny_model_dir, tmp_path):
    stale = tmp_path / "sft" / "checkpoint-999"
    stale.mkdir(parents=True)
    train_run(small_config, "sft", tiny_model_dir, data_dir, tmp_path / "sft")
    assert not stale.exists()
    assert json.loads((tmp_path / "sft" / "checkpoints.json").read_text())["steps"] == [0, 2, 4]


def test_distill_without_teacher_explains(small_config, data_dir, tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="pass --teacher"):
        train_run(small_config, "distill", tiny_model_dir, data_dir, tmp_path / "d")


def test_unknown_run_lists_runs(small_config, data_dir, tiny_model_dir, tmp_path):
    with pytest.raises(KeyError, match="sft, grpo, distill"):
        train_run(small_config, "ppo", tiny_model_dir, data_dir, tmp_path / "x")
