"""Each training method, for a few steps on a random tiny model: checkpoints, manifest, log."""

from __future__ import annotations

import copy
import json

import polars as pl
import pytest

from sparks.config import check_config
from sparks.data.answers import is_correct
from sparks.manifest import read_manifest
from sparks.prepare import prepare_data
from sparks.tables import read_table
from sparks.train import train_run
from sparks.train.teacher import sample_teacher_traces


@pytest.fixture(scope="module")
def small_raw():
    """The embedded default, scaled down, as a config file holds it."""
    import yaml
    from conftest import REPO

    raw = yaml.safe_load((REPO / "workflow_config.yaml").read_text())
    raw["tasks"]["arith"].update(n_train=48, n_eval=4, n_pairs=4)
    for run in raw["runs"].values():
        run.update(max_steps=4, save_steps=2, batch_size=8)
    raw["runs"]["grpo"]["grpo"].update(num_generations=4, max_completion_length=12)
    raw["runs"]["distill"]["distill"].update(max_new_tokens=12)
    return raw


@pytest.fixture(scope="module")
def small_config(small_raw):
    return check_config(small_raw)


@pytest.fixture(scope="module")
def problems(tmp_path_factory, small_config, tiny_model_dir):
    out = tmp_path_factory.mktemp("data")
    prepare_data(small_config, "arith", tiny_model_dir, out / "problems.parquet", out / "pairs.parquet")
    return out / "problems.parquet"


def train(config, run, base, problems, out, teacher=None):
    """train_run into the run folder ``out`` (manifest and log where the layout puts them); a
    distill run first samples ``teacher`` into its teacher_traces table, as the DAG does."""
    traces = None
    if teacher is not None and config["runs"][run]["method"] == "distill":
        traces = sample_teacher_traces(config, run, problems, teacher, out.parent / f"{out.name}_traces.parquet")
    return train_run(config, run, base, problems, out / "checkpoints.json", out / "train_log.parquet", traces)


@pytest.mark.parametrize("run", ["sft", "grpo", "distill"])
def test_train_run_saves_checkpoints_manifest_and_log(run, small_config, problems, tiny_model_dir, tmp_path):
    from sparks.model.load import model_hash

    manifest = read_manifest(train(small_config, run, tiny_model_dir, problems, tmp_path / run, tiny_model_dir))
    assert manifest.steps == (0, 2, 4) and manifest.run == run and manifest.method == run
    log = read_table(tmp_path / run / "train_log.parquet", "train_log")
    hashes = manifest.hashes
    if run == "grpo":  # a random model learns only from groups whose rewards differ (else every advantage is 0)
        assert (hashes[4] != hashes[0]) == (log["frac_reward_zero_std"].min() < 1)
    else:
        assert len(set(hashes.values())) == 3
    assert manifest.checkpoint(4) == tmp_path / run / "checkpoint-4"
    assert (manifest.checkpoint(4) / "tokenizer.json").is_file()
    assert all(model_hash(manifest.checkpoint(s)) == manifest.model_hash(s) for s in manifest.steps)
    assert log["step"].to_list() == [1, 2, 3, 4]
    assert log["loss"].null_count() == 0
    if run == "grpo":
        assert log["reward"].null_count() == 0 and log["reward_correctness"].null_count() == 0
    with pytest.raises(KeyError, match=r"step 3 is not in .* \(steps: 0, 2, 4\)"):
        manifest.checkpoint(3)


def test_rerun_replaces_stale_checkpoints(small_config, problems, tiny_model_dir, tmp_path):
    stale = tmp_path / "sft" / "checkpoint-999"
    stale.mkdir(parents=True)
    train(small_config, "sft", tiny_model_dir, problems, tmp_path / "sft")
    assert not stale.exists()
    assert json.loads((tmp_path / "sft" / "checkpoints.json").read_text())["steps"] == [0, 2, 4]


def test_distill_without_teacher_explains(small_config, problems, tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="pass --teacher-traces"):
        train(small_config, "distill", tiny_model_dir, problems, tmp_path / "d")
    with pytest.raises(ValueError, match="pass --teacher <folder from prepare-model"):
        sample_teacher_traces(small_config, "distill", problems, None, tmp_path / "t.parquet")
    with pytest.raises(KeyError, match=r"run 'sft' is not a distill run .* \(distill runs: distill\)"):
        sample_teacher_traces(small_config, "sft", problems, tiny_model_dir, tmp_path / "t.parquet")


def test_teacher_traces_record_the_samples_and_settings_and_distill_never_resamples(
    small_config, problems, tiny_model_dir, tmp_path
):
    """The teacher_traces table holds every sample with its check and the sampling settings; a
    distill run reads it and never loads the teacher (here: the teacher folder is gone by then)."""
    import shutil

    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_model_dir, teacher)
    out = sample_teacher_traces(small_config, "distill", problems, teacher, tmp_path / "traces.parquet")
    traces = read_table(out, "teacher_traces")
    settings = small_config["runs"]["distill"]["distill"]
    n_problems = read_table(problems, "problems").filter(pl.col("split") == "train").height
    assert traces.height == n_problems * settings["samples_per_problem"]
    assert traces["teacher"].unique().to_list() == [str(teacher)] and traces["prompt_form"].unique().to_list() == ["plain"]
    assert traces["temperature"].unique().to_list() == [settings["temperature"]]
    assert traces["correct"].to_list() == [is_correct(c, a) for c, a in zip(traces["completion"], traces["answer"])]
    shutil.rmtree(teacher)
    config = copy.deepcopy(small_config)
    config["runs"]["distill"]["distill"]["only_correct"] = False  # a random teacher is never right
    manifest = read_manifest(
        train_run(
            config, "distill", tiny_model_dir, problems, tmp_path / "d" / "checkpoints.json", tmp_path / "d" / "log.parquet", out
        )
    )
    assert manifest.steps == (0, 2, 4)


def test_unknown_run_lists_runs(small_config, problems, tiny_model_dir, tmp_path):
    with pytest.raises(KeyError, match="sft, grpo, distill"):
        train(small_config, "ppo", tiny_model_dir, problems, tmp_path / "x")


def _weights(folder):
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.glob("*.safetensors")}


@pytest.mark.slow
def test_killed_run_resumes_from_its_last_complete_checkpoint(small_raw, problems, tiny_model_dir, tmp_path):
    """SIGKILL a training job right after a checkpoint is complete; the rerun keeps the finished
    checkpoints byte for byte, trains only the rest, and ends where an uninterrupted run ends."""
    import copy
    import shutil
    import signal
    import subprocess
    import sys
    import time

    import yaml

    config = copy.deepcopy(small_raw)
    config["runs"]["sft"].update(max_steps=40, save_steps=10)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "killed"

    def train(out_dir):  # the CLI, as the workflow runs it (its thread settings are the stage's own)
        cmd = [sys.executable, "-m", "sparks.cli", "train", "--config", str(tmp_path / "config.yaml"), "--run", "sft"]
        cmd += ["--base", str(tiny_model_dir), "--problems", str(problems)]
        cmd += ["--manifest-out", str(out_dir / "checkpoints.json"), "--train-log-out", str(out_dir / "train_log.parquet")]
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    # TRL's result depends on the output folder's path (measured), so the uninterrupted reference
    # trains in the same folder first.
    assert train(out).wait() == 0
    straight = read_manifest(out / "checkpoints.json")
    shutil.rmtree(out)

    job = train(out)
    marker = out / "checkpoint-10" / ".sparks-complete"
    deadline = time.monotonic() + 300
    while not marker.exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    job.send_signal(signal.SIGKILL)
    job.wait()
    assert job.returncode == -signal.SIGKILL, "training finished before it could be killed; raise max_steps"
    assert not (out / "checkpoints.json").exists()
    kept = {step: _weights(out / f"checkpoint-{step}") for step in (0, 10)}

    assert train(out).wait() == 0
    manifest = read_manifest(out / "checkpoints.json")
    assert manifest.steps == (0, 10, 20, 30, 40)
    assert {step: _weights(out / f"checkpoint-{step}") for step in (0, 10)} == kept  # not redone
    assert not list(out.glob("checkpoint-*/optimizer.pt"))  # resume state is gone once the run is over
    log = read_table(out / "train_log.parquet", "train_log")
    assert log["step"].to_list() == list(range(1, 41))
    assert manifest.hashes == straight.hashes


def test_finished_run_is_not_trained_again(small_config, problems, tiny_model_dir, tmp_path):
    out = tmp_path / "sft"
    first = read_manifest(train(small_config, "sft", tiny_model_dir, problems, out))
    before = _weights(out / "checkpoint-4")
    (out / "checkpoints.json").unlink()  # e.g. killed after the last checkpoint, before the manifest
    again = read_manifest(train(small_config, "sft", tiny_model_dir, problems, out))
    assert again == first and _weights(out / "checkpoint-4") == before


def test_other_settings_start_afresh(small_config, problems, tiny_model_dir, tmp_path):
    import copy

    out = tmp_path / "sft"
    first = read_manifest(train(small_config, "sft", tiny_model_dir, problems, out))
    config = copy.deepcopy(small_config)
    config["runs"]["sft"]["learning_rate"] *= 2
    second = read_manifest(train(config, "sft", tiny_model_dir, problems, out))
    assert second.model_hash(0) == first.model_hash(0)
    assert second.model_hash(4) != first.model_hash(4)


@pytest.mark.parametrize("run", ["sft", "grpo"])
def test_gradient_checkpointing_is_the_runs_choice_and_changes_no_weight(
    run, small_config, problems, tiny_model_dir, tmp_path, monkeypatch
):
    import transformers

    used = []
    original = transformers.Trainer.train

    def train_and_note(trainer, *args, **kwargs):
        result = original(trainer, *args, **kwargs)
        used.append(trainer.model.is_gradient_checkpointing)  # set on the model by Trainer.train
        return result

    monkeypatch.setattr(transformers.Trainer, "train", train_and_note)
    hashes = {}
    for on in (True, False):
        config = copy.deepcopy(small_config)
        config["runs"][run]["gradient_checkpointing"] = on
        hashes[on] = read_manifest(train(config, run, tiny_model_dir, problems, tmp_path / str(on))).hashes
    assert used == [True, False]
    assert hashes[True] == hashes[False] and len(set(hashes[True].values())) > 1


def test_warmup_ratio_sets_the_warmup_steps(small_config, problems, tiny_model_dir, tmp_path, monkeypatch):
    import transformers

    class Stop(Exception):
        pass

    seen = []

    def note(trainer, *args, **kwargs):
        seen.append(trainer.args.warmup_steps)
        raise Stop

    monkeypatch.setattr(transformers.Trainer, "train", note)
    for ratio in (None, 0.5):
        config = copy.deepcopy(small_config)
        config["runs"]["sft"]["warmup_ratio"] = ratio
        with pytest.raises(Stop):
            train(config, "sft", tiny_model_dir, problems, tmp_path / str(ratio))
    assert seen == [0, 2]  # max_steps 4: min(10, 4 // 10) by default, 0.5 x 4 with the ratio


def test_checkpoints_saved_in_bfloat16_keep_float32_until_superseded(small_config, problems, tiny_model_dir, tmp_path):
    import torch
    from safetensors.torch import load_file

    from sparks.model.load import load_checkpoint
    from sparks.model.store import cast_weights
    from sparks.sources import weight_files
    from sparks.tables import file_hash

    config = copy.deepcopy(small_config)
    config["runs"]["sft"]["save_dtype"] = "bfloat16"
    manifest = read_manifest(train(config, "sft", tiny_model_dir, problems, tmp_path / "bf16"))
    float32 = read_manifest(train(copy.deepcopy(small_config), "sft", tiny_model_dir, problems, tmp_path / "fp32"))
    for step in manifest.steps:
        folder = manifest.checkpoint(step)
        tensors = load_file(weight_files(folder)[0])
        assert {t.dtype for t in tensors.values()} == {torch.bfloat16}
        reference = load_file(weight_files(float32.checkpoint(step))[0])
        assert all(torch.equal(tensors[k], reference[k].to(torch.bfloat16)) for k in reference)  # the same training, cast
        assert manifest.model_hash(step) == file_hash(weight_files(folder))  # hashes of what is on disk
        model, _ = load_checkpoint(folder)  # float32 on CPU, bfloat16 on CUDA: the saved values either way
        embedding = model.get_input_embeddings().weight
        assert torch.equal(embedding, tensors["model.embed_tokens.weight"].to(embedding.dtype))
    assert {t.dtype for t in load_file(weight_files(float32.checkpoint(4))[0]).values()} == {torch.float32}  # the default
    assert not cast_weights(manifest.checkpoint(4), "bfloat16")  # already cast: nothing to do


def test_the_newest_checkpoint_keeps_float32_for_resume(tiny_model_dir, tmp_path):
    import shutil
    import types

    import torch
    from safetensors.torch import load_file

    from sparks.sources import weight_files
    from sparks.train.resume import CheckpointMarker, mark_complete

    for step in (0, 2):
        shutil.copytree(tiny_model_dir, tmp_path / f"checkpoint-{step}")
        mark_complete(tmp_path / f"checkpoint-{step}")
    CheckpointMarker(tmp_path, "bfloat16").on_save(None, types.SimpleNamespace(global_step=2), None)

    def dtypes(step):
        return {t.dtype for t in load_file(weight_files(tmp_path / f"checkpoint-{step}")[0]).values()}

    assert dtypes(0) == {torch.bfloat16} and dtypes(2) == {torch.float32}
