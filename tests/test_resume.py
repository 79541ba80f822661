"""Resume state of every training strategy (resources.train.strategy): a retry resumes from the
newest complete checkpoint whatever wrote it, superseded checkpoints lose their resume state
(files and folders) but never their weights, and float32 means the master weights. Checkpoint
folders are laid out as transformers' Trainer, DeepSpeed and accelerate's FSDP write them, with
small dummy files (sparks.train.resume's docstring lists the layouts)."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from sparks.train.resume import COMPLETE, RUN_STATE, CheckpointMarker, mark_complete, retire, start_or_resume

IDENTITY = {"run": "sft", "settings": "abc"}
RANKS = (0, 1)  # two processes


def _state_files(strategy: str, step: int) -> list[str]:
    """What ``strategy`` writes into checkpoint-{step}/ for resuming (paths under it)."""
    rng = [f"rng_state_{r}.pth" for r in RANKS]
    tag = f"global_step{step}"
    if strategy == "ddp":
        return ["optimizer.pt", "scheduler.pt", *rng]
    if strategy in ("zero2", "zero3", "zero3_no_16bit"):
        models = [f"{tag}/mp_rank_00_model_states.pt"]
        if strategy != "zero2":  # ZeRO-3 partitions the weights: each rank's model states
            models = [f"{tag}/zero_pp_rank_{r}_mp_rank_00_model_states.pt" for r in RANKS]
        optim = [f"{tag}/bf16_zero_pp_rank_{r}_mp_rank_00_optim_states.pt" for r in RANKS]
        return [*models, *optim, "latest", "zero_to_fp32.py", "scheduler.pt", *rng]
    if strategy == "fsdp":  # FULL_STATE_DICT, as sparks.train.launch configures it
        return ["pytorch_model_fsdp.bin", "optimizer.bin", "scheduler.pt", *rng]
    if strategy == "fsdp_sharded":
        shards = [".metadata", *(f"__{r}_0.distcp" for r in RANKS)]
        return [*(f"pytorch_model_fsdp_0/{s}" for s in shards), *(f"optimizer_0/{s}" for s in shards), "scheduler.pt", *rng]
    raise ValueError(strategy)


LAYOUT = {"ddp": "plain", "zero2": "deepspeed", "zero3": "deepspeed", "zero3_no_16bit": "deepspeed"}
LAYOUT |= {"fsdp": "fsdp", "fsdp_sharded": "fsdp"}
NO_SAFETENSORS = ("zero3_no_16bit", "fsdp_sharded")  # their only weights are their resume state
MODEL_ONLY_STATE = {
    "zero3_no_16bit": ["global_step{step}", "latest", "zero_to_fp32.py"],
    "fsdp_sharded": ["pytorch_model_fsdp_0"],
}
BF16_WEIGHTS = ("zero2", "zero3")  # DeepSpeed holds the model in bf16, and saves it so


def _masters(step: int) -> dict[str, torch.Tensor]:
    return {"w": torch.full((4, 4), 1.0 + step / 1000, dtype=torch.float32), "b": torch.full((4,), -1 / 3, dtype=torch.float32)}


def _checkpoint(out: Path, strategy: str, step: int, complete: bool = True, state: bool = True) -> Path:
    folder = out / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    dtype = torch.bfloat16 if strategy in BF16_WEIGHTS and state else torch.float32
    if strategy not in NO_SAFETENSORS or step == 0:
        save_file({k: t.to(dtype) for k, t in _masters(step).items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"dtype": str(dtype).split(".")[1]}))
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))
    (folder / "training_args.bin").write_bytes(b"args")
    for name in _state_files(strategy, step) if state and step else ():
        path = folder / name
        path.parent.mkdir(exist_ok=True)
        if name == "latest":
            path.write_text(f"global_step{step}")
        elif name.endswith("_optim_states.pt") and "rank_0_" in name:  # the float32 masters (rank 0's, in this fake)
            torch.save(_masters(step), path)
        else:
            path.write_bytes(b"state")
    if complete:
        mark_complete(folder)
    return folder


def _listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture
def fake_deepspeed(monkeypatch):
    """deepspeed.utils.zero_to_fp32 as DeepSpeed has it (get_fp32_state_dict_from_zero_checkpoint
    reads the tag from ``latest``; lazy_mode gives tensors whose contiguous() materialises them);
    this fake returns the masters the rank-0 optimizer file of _checkpoint holds."""
    calls = []

    def get_fp32_state_dict_from_zero_checkpoint(checkpoint_dir, tag=None, exclude_frozen_parameters=False, lazy_mode=False):
        tag = tag or (Path(checkpoint_dir) / "latest").read_text().strip()
        calls.append((Path(checkpoint_dir).name, tag, lazy_mode))
        return torch.load(Path(checkpoint_dir) / tag / "bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt")

    module = types.ModuleType("deepspeed.utils.zero_to_fp32")
    module.get_fp32_state_dict_from_zero_checkpoint = get_fp32_state_dict_from_zero_checkpoint
    for name in ("deepspeed", "deepspeed.utils"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "deepspeed.utils.zero_to_fp32", module)
    return calls


@pytest.mark.parametrize("strategy", list(LAYOUT))
def test_a_retry_resumes_from_the_newest_complete_checkpoint_of_each_strategy(strategy, tmp_path):
    (tmp_path / RUN_STATE).write_text(json.dumps(IDENTITY))
    _checkpoint(tmp_path, strategy, 0)
    _checkpoint(tmp_path, strategy, 2, state=False)  # already retired
    newest = _checkpoint(tmp_path, strategy, 4)
    before = _listing(newest)
    _checkpoint(tmp_path, strategy, 6, complete=False)  # half-written when the job was killed

    assert start_or_resume(tmp_path, IDENTITY, 10, LAYOUT[strategy]) == newest
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-0", "checkpoint-2", "checkpoint-4"]
    assert _listing(newest) == before


@pytest.mark.parametrize("strategy", list(LAYOUT))
def test_superseded_checkpoints_keep_only_their_weights(strategy, tmp_path, fake_deepspeed):
    for step in (0, 2, 4):
        _checkpoint(tmp_path, strategy, step)
    newest = _listing(tmp_path / "checkpoint-4")

    CheckpointMarker(tmp_path).on_save(None, types.SimpleNamespace(global_step=4), None)

    folder = tmp_path / "checkpoint-2"
    model = {"config.json", "trainer_state.json", "training_args.bin", COMPLETE}
    if strategy in NO_SAFETENSORS:  # its resume state is its only copy of the weights: kept, optimizer state dropped
        kept = {name.format(step=2) for name in MODEL_ONLY_STATE[strategy]}
        assert {p for p in _listing(folder) if p.split("/")[0] not in kept} == model
        assert kept <= _listing(folder) and not list(folder.glob("optimizer*"))
    else:
        assert _listing(folder) == model | {"model.safetensors"}
        weights = load_file(folder / "model.safetensors")
        assert all(torch.equal(weights[k], t) for k, t in _masters(2).items())  # float32: the master weights
        assert json.loads((folder / "config.json").read_text())["dtype"] == "float32"
    assert _listing(tmp_path / "checkpoint-4") == newest  # the newest keeps everything
    assert fake_deepspeed == ([("checkpoint-2", "global_step2", True)] if strategy in BF16_WEIGHTS else [])

    retire(tmp_path / "checkpoint-4", "float32")  # the run is over (sparks.train.train_run)
    assert _listing(tmp_path / "checkpoint-4") == {p.replace("step2", "step4") for p in _listing(folder)}


@pytest.mark.parametrize("strategy", ["zero3", "fsdp"])
def test_bfloat16_checkpoints_drop_the_master_weights(strategy, tmp_path, fake_deepspeed):
    for step in (0, 2, 4):
        _checkpoint(tmp_path, strategy, step)
    CheckpointMarker(tmp_path, "bfloat16").on_save(None, types.SimpleNamespace(global_step=4), None)
    weights = load_file(tmp_path / "checkpoint-2" / "model.safetensors")
    assert {t.dtype for t in weights.values()} == {torch.bfloat16} and not fake_deepspeed
    assert json.loads((tmp_path / "checkpoint-2" / "config.json").read_text())["dtype"] == "bfloat16"
    model = {"config.json", "trainer_state.json", "training_args.bin", COMPLETE, "model.safetensors"}
    assert _listing(tmp_path / "checkpoint-2") == model


def test_a_checkpoint_of_another_strategy_is_not_resumed(tmp_path, caplog):
    (tmp_path / RUN_STATE).write_text(json.dumps(IDENTITY))
    _checkpoint(tmp_path, "zero3", 0)
    _checkpoint(tmp_path, "zero3", 4)
    assert start_or_resume(tmp_path, IDENTITY, 4, "plain") == tmp_path / "checkpoint-4"  # finished there: nothing to train
    assert start_or_resume(tmp_path, IDENTITY, 10, "plain") is None  # DDP cannot load DeepSpeed's optimizer state
    assert "deepspeed optimizer state, and this run trains as plain" in caplog.text
    assert not list(tmp_path.glob("checkpoint-*"))


@pytest.fixture(scope="module")
def small(tmp_path_factory, tiny_model_dir):
    """The embedded config scaled down, and its arithmetic problems."""
    import yaml
    from conftest import REPO

    from sparks.config import check_config
    from sparks.prepare import prepare_data

    raw = yaml.safe_load((REPO / "workflow_config.yaml").read_text())
    raw["tasks"]["arith"].update(n_train=16, n_eval=4, n_pairs=4)
    raw["runs"]["sft"].update(max_steps=4, save_steps=2, batch_size=8)
    config = check_config(raw)
    out = tmp_path_factory.mktemp("data")
    prepare_data(config, "arith", tiny_model_dir, out / "problems.parquet", out / "pairs.parquet")
    return config, out / "problems.parquet"


class Stop(Exception):
    pass


def test_training_keeps_no_second_copy_of_the_base(small, tiny_model_dir, tmp_path, monkeypatch):
    """The base is loaded to write checkpoint-0 and let go before training (the trainer loads its
    own copy from checkpoint-0); a resumed run does not load it at all."""
    import gc
    import shutil
    import weakref

    import transformers

    import sparks.model.load
    from sparks.train import train_run

    config, problems = small
    loaded, alive = [], []
    load_model = sparks.model.load.load_model

    def load_and_note(*args, **kwargs):
        model = load_model(*args, **kwargs)
        loaded.append(weakref.ref(model))
        return model

    def train(trainer, resume_from_checkpoint=None, **kwargs):
        gc.collect()
        alive.append([ref() is not None for ref in loaded])
        raise Stop(resume_from_checkpoint)

    monkeypatch.setattr(sparks.model.load, "load_model", load_and_note)
    monkeypatch.setattr(transformers.Trainer, "train", train)
    out = tmp_path / "sft"
    with pytest.raises(Stop, match="None"):
        train_run(config, "sft", tiny_model_dir, problems, out / "checkpoints.json", out / "train_log.parquet")
    assert alive == [[False]]  # loaded once, and gone by the time training starts

    shutil.copytree(out / "checkpoint-0", out / "checkpoint-2")  # as if killed after step 2
    (out / "checkpoint-2" / "optimizer.pt").write_bytes(b"state")
    (out / "checkpoint-2" / "trainer_state.json").write_text(json.dumps({"global_step": 2, "log_history": []}))
    loaded.clear()
    with pytest.raises(Stop, match="checkpoint-2"):
        train_run(config, "sft", tiny_model_dir, problems, out / "checkpoints.json", out / "train_log.parquet")
    assert not loaded
