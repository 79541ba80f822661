"""Head-restricted training (runs.<name>.train_heads, sparks.train.heads) and self-distillation
(distill.teacher: base): the frozen weights stay bit-identical, the named heads' slices move."""

from __future__ import annotations

import copy

import polars as pl
import pytest
import torch
import yaml
from conftest import REPO, snakemake

from sparks.config import ConfigError, check_config
from sparks.manifest import read_manifest
from sparks.prepare import prepare_data
from sparks.train import train_run
from sparks.train.heads import HeadPolicy, restrict_updates
from sparks.train.teacher import sample_teacher_traces
from sparks.types import HeadId, parse_heads

TRAINED = ["a2.h3", "a3.h5"]


def _tiny(tokenizer, n_layers=4, n_heads=8):
    from sparks.model.tiny import TinyShape, build_tiny_qwen2

    torch.manual_seed(0)
    shape = TinyShape.defaults(hidden_size=64, n_layers=n_layers, n_heads=n_heads, n_kv_heads=2, intermediate_size=128)
    return build_tiny_qwen2(shape, tokenizer)


def movable(name: str, shape: torch.Size, heads: list[HeadId], n_heads: int, n_kv: int, train: bool) -> torch.Tensor:
    """The reference: the entries of state-dict tensor ``name`` that may change when ``heads`` are
    trained (``train``) or frozen, written out by hand (rows of q_proj, columns of o_proj, a KV
    head's k/v rows only under freeze and only if some head of its group still trains)."""
    free = torch.full(shape, not train)  # outside attention: all or nothing
    parts = name.split(".")
    if "self_attn" not in parts:
        return free
    layer, proj = int(parts[parts.index("layers") + 1]), parts[-2]
    d = (shape[1] if proj == "o_proj" else shape[0]) // (n_kv if proj in ("k_proj", "v_proj") else n_heads)
    listed = {h.head for h in heads if h.layer == layer}
    for head in range(n_heads):
        learns = (head in listed) == train
        if proj == "q_proj":
            free[head * d : (head + 1) * d] = learns
        elif proj == "o_proj":
            free[:, head * d : (head + 1) * d] = learns
    group = n_heads // n_kv
    for kv in range(n_kv):
        if proj in ("k_proj", "v_proj"):
            free[kv * d : (kv + 1) * d] = not train and not set(range(kv * group, (kv + 1) * group)) <= listed
    return free


def assert_restricted(before: dict, after: dict, heads: list[str], n_heads: int, n_kv: int, train: bool) -> None:
    """Every entry outside the movable slices is bit-identical; every movable slice changed."""
    ids = parse_heads(heads, "heads")
    for name, old in before.items():
        free = movable(name, old.shape, ids, n_heads, n_kv, train)
        new = after[name]
        assert torch.equal(new[~free], old[~free]), f"{name} changed outside the trained slices"
        if free.any():
            assert not torch.equal(new[free], old[free]), f"{name}'s trained slices did not change"


def _optimise(model, fused: bool, weight_decay: float = 0.0, steps: int = 5) -> None:
    """A few steps of plain torch AdamW with clipping on a next-token loss over random tokens."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=weight_decay, fused=fused)
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        ids = torch.randint(0, model.config.vocab_size, (4, 12), generator=generator)  # [batch, pos]
        model(input_ids=ids, labels=ids).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=0.1)  # clips: every step's norm is larger
        optimizer.step()
        optimizer.zero_grad()


@pytest.mark.parametrize("fused", [False, True])
def test_only_the_trained_heads_slices_move_under_adamw_and_clipping(tokenizer, fused):
    model = _tiny(tokenizer)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    restriction = restrict_updates(model, train=TRAINED, key="runs.x.train_heads")
    assert restriction.trainable == 2 * (8 * 64 + 8 + 64 * 8)  # per head: q rows, q bias, o columns (head_dim 8)
    assert model.lm_head.weight is model.model.embed_tokens.weight and not model.lm_head.weight.requires_grad
    _optimise(model, fused)
    assert_restricted(before, model.state_dict(), TRAINED, n_heads=8, n_kv=2, train=True)


def test_weight_decay_moves_frozen_slices_so_it_is_refused(tokenizer):
    """Why restrict_trainer refuses weight_decay: AdamW decays the frozen rows of a tensor it holds."""
    model = _tiny(tokenizer)
    q = model.model.layers[2].self_attn.q_proj.weight
    before = q.detach().clone()
    restrict_updates(model, train=TRAINED)
    _optimise(model, fused=False, weight_decay=0.1, steps=1)
    assert not torch.equal(q[:8], before[:8])  # a0.h0's rows of a2: no gradient, decayed anyway


def test_freezing_heads_keeps_their_slices_and_a_kv_head_only_with_its_whole_group(tokenizer):
    frozen = ["a1.h0", "a1.h1", "a1.h2", "a1.h3", "a2.h5"]  # a1's KV head 0 (heads 0-3) frozen; a2's KV head 1 trains
    model = _tiny(tokenizer)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    restriction = restrict_updates(model, freeze=frozen)
    assert restriction.total - restriction.trainable == 5 * (8 * 64 + 8 + 64 * 8) + 2 * (8 * 64 + 8)
    _optimise(model, fused=True)
    after = model.state_dict()
    assert_restricted(before, after, frozen, n_heads=8, n_kv=2, train=False)
    k1 = "model.layers.1.self_attn.k_proj.weight"
    assert torch.equal(after[k1][:8], before[k1][:8]) and not torch.equal(after[k1][8:], before[k1][8:])


def test_restrict_updates_checks_its_heads(tokenizer):
    model = _tiny(tokenizer, n_layers=2, n_heads=4)
    with pytest.raises(ValueError, match=r"runs.x.train_heads names a2.h0, .*2 layers x 4 heads: a0.h0 to a1.h3"):
        restrict_updates(model, train=["a2.h0"], key="runs.x.train_heads")
    with pytest.raises(ValueError, match=r"runs.x.train_heads names 'a1h0', which is not a head name"):
        restrict_updates(model, train=["a1h0"], key="runs.x.train_heads")
    with pytest.raises(ValueError, match="exactly one of train= and freeze="):
        restrict_updates(model, train=["a0.h0"], freeze=["a0.h1"])


# Through the train stage -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def head_config():
    """The embedded default, scaled down, every training run restricted to two heads of the
    2-layer, 4-head tiny model; distill samples the run's own base (teacher: base)."""
    raw = yaml.safe_load((REPO / "workflow_config.yaml").read_text())
    raw["tasks"]["arith"].update(n_train=48, n_eval=4, n_pairs=4)
    for run in raw["runs"].values():
        run.update(max_steps=4, save_steps=2, batch_size=8, train_heads=["a1.h2", "a0.h1"])
    raw["runs"]["sft"]["gradient_checkpointing"] = True  # frozen embeddings: gradients must still reach layer 0
    raw["runs"]["grpo"]["grpo"].update(num_generations=4, max_completion_length=12)
    raw["runs"]["distill"]["distill"].update(teacher="base", max_new_tokens=12)
    return check_config(raw)


@pytest.fixture(scope="module")
def problems(tmp_path_factory, head_config, tiny_model_dir):
    out = tmp_path_factory.mktemp("head_data")
    prepare_data(head_config, "arith", tiny_model_dir, out / "problems.parquet", out / "pairs.parquet")
    return out / "problems.parquet"


WEIGHT = 1e4  # anchor weight of the anchored runs: the penalty of the tiny model's heads is ~1e-4
FROZEN = ["a1.h2", "a1.h3", "a0.h1"]  # a1's KV head 1 (heads 2-3) frozen whole; a0's KV head 0 still trains


def _train(run, head_config, problems, tiny_model_dir, out, policy=None):
    """Train ``run`` of ``head_config`` into ``out`` (distill: self-distillation, sampled first);
    returns its manifest and train_log."""
    from sparks.tables import read_table

    traces = None
    if run == "distill":  # self-distillation: the run's base is its teacher
        traces = sample_teacher_traces(head_config, run, problems, tiny_model_dir, out / "traces.parquet")
        assert read_table(traces, "teacher_traces")["teacher"].unique().to_list() == [str(tiny_model_dir)]
        head_config = copy.deepcopy(head_config)
        head_config["runs"][run]["distill"]["only_correct"] = False
    manifest = train_run(
        head_config, run, tiny_model_dir, problems, out / "checkpoints.json", out / "train_log.parquet", traces, policy
    )
    return read_manifest(manifest), read_table(out / "train_log.parquet", "train_log")


@pytest.mark.parametrize("how", ["train_heads", "freeze"])
@pytest.mark.parametrize("run", ["sft", "grpo", "distill"])
def test_head_policy_run_changes_only_what_it_may_in_every_checkpoint(
    run, how, head_config, problems, tiny_model_dir, tmp_path, caplog
):
    """train_heads (the config key): only the named heads' q rows and o columns move. A freeze
    policy: the frozen heads' slices (and a KV head whose whole group is frozen) stay bit-identical
    to step 0, and everything else moves."""
    import logging

    from safetensors.torch import load_file

    caplog.set_level(logging.INFO, logger="sparks.train.heads")
    policy = HeadPolicy(freeze=tuple(FROZEN)) if how == "freeze" else None
    manifest, log = _train(run, head_config, problems, tiny_model_dir, tmp_path / run, policy)
    assert manifest.steps == (0, 2, 4)
    if how == "freeze":
        assert f"runs.{run}.heads: freeze a1.h2, a1.h3, a0.h1: " in caplog.text
    else:  # 2 x (8 q rows + 8 biases + 8 o columns) x 32 wide
        assert f"runs.{run}.train_heads: train only a1.h2, a0.h1: 1040 of " in caplog.text
    assert log["anchor"].is_null().all()  # no anchor
    heads, train = (FROZEN, False) if how == "freeze" else (["a1.h2", "a0.h1"], True)
    start = load_file(manifest.checkpoint(0) / "model.safetensors")
    for step in (2, 4):
        weights = load_file(manifest.checkpoint(step) / "model.safetensors")
        assert weights.keys() == start.keys()
        signal = log.filter(pl.col("step") <= step)["frac_reward_zero_std"].min() < 1 if run == "grpo" else True
        if signal:  # GRPO learns only from groups whose rewards differ
            assert_restricted(start, weights, heads, n_heads=4, n_kv=2, train=train)
        else:
            assert all(torch.equal(weights[k], v) for k, v in start.items())


def _anchor_distance(manifest, step: int, heads: list[str]) -> float:
    """The anchor penalty of checkpoint ``step`` against step 0 on a fixed batch of random tokens."""
    from transformers import AutoModelForCausalLM

    from sparks.train.anchor import ActivationAnchor

    start, model = (AutoModelForCausalLM.from_pretrained(manifest.checkpoint(s)) for s in (0, step))
    anchor = ActivationAnchor(model, heads, reference=start.eval())
    ids = torch.randint(0, model.config.vocab_size, (8, 24), generator=torch.Generator().manual_seed(5))
    model.train()
    model(input_ids=ids)
    return anchor.take().item()


def test_an_anchored_sft_run_logs_its_penalty_and_keeps_the_heads_near_the_start(
    head_config, problems, tiny_model_dir, tmp_path, monkeypatch
):
    """Weight 0 installs nothing (anchor null in train_log); a large weight logs the penalty, the
    mean of its micro-batches' (2 per step here), 0 at step 1 (nothing has moved yet) and > 0 after,
    and leaves the anchored heads' outputs closer to step 0's than the same run without it."""
    from sparks.train.anchor import ActivationAnchor

    heads = ["a1.h0", "a1.h3"]
    config = copy.deepcopy(head_config)
    config["runs"]["sft"].update(micro_batch_size=4, max_steps=4, save_steps=4)  # 2 micro-batches per step
    taken = []
    take = ActivationAnchor.take

    def spy(self):
        penalty = take(self)
        if penalty is not None:
            taken.append(penalty.item())
        return penalty

    monkeypatch.setattr(ActivationAnchor, "take", spy)
    manifests, logs = {}, {}
    for weight in (0.0, WEIGHT):
        policy = HeadPolicy(anchor=tuple(heads), anchor_weight=weight)
        manifests[weight], logs[weight] = _train("sft", config, problems, tiny_model_dir, tmp_path / str(weight), policy)
    monkeypatch.undo()
    assert logs[0.0]["anchor"].is_null().all() and len(taken) == 8  # weight 0: no anchor; then 4 steps x 2
    anchored = logs[WEIGHT].sort("step")
    assert anchored["step"].to_list() == [1, 2, 3, 4]
    assert anchored["anchor"].to_list() == pytest.approx([(a + b) / 2 for a, b in zip(taken[::2], taken[1::2])])
    assert anchored["anchor"][0] == 0.0 and (anchored["anchor"][1:] > 0).all()
    distances = {weight: _anchor_distance(manifest, 4, heads) for weight, manifest in manifests.items()}
    assert distances[WEIGHT] < distances[0.0] / 2


def test_an_anchored_grpo_run_logs_its_penalty(head_config, problems, tiny_model_dir, tmp_path):
    """The anchor runs in GRPO's loss passes only (not its generation), 0 until the policy moves."""
    from safetensors.torch import load_file

    config = copy.deepcopy(head_config)
    config["runs"]["grpo"].update(max_steps=6, save_steps=6)
    policy = HeadPolicy(freeze=("a0.h0",), anchor=("a1.h1",), anchor_weight=WEIGHT)
    manifest, log = _train("grpo", config, problems, tiny_model_dir, tmp_path, policy)
    assert log.height == 6 and log["anchor"].is_not_null().all() and log["anchor"][0] == 0.0
    moved = log.filter(pl.col("step") < 6)["frac_reward_zero_std"].min() < 1  # a step with signal before the last
    assert (log["anchor"][-1] > 0) == moved
    start, end = (load_file(manifest.checkpoint(step) / "model.safetensors") for step in (0, 6))
    for name, old in start.items():  # the anchor's gradient does not reach the frozen head
        free = movable(name, old.shape, parse_heads(["a0.h0"], "heads"), n_heads=4, n_kv=2, train=False)
        assert torch.equal(end[name][~free], old[~free]), name


def test_head_policies_with_weight_decay_are_refused_at_train_time():
    """The config check refuses trainer.weight_decay; the train stage checks the trainer it built too
    (an anchor alone restricts nothing, so it has no reason to refuse)."""
    from sparks.train.heads import apply_head_policy, restrict_trainer

    class Trainer:
        args = type("Args", (), {"weight_decay": 0.01})()

    for policy in (HeadPolicy(train_only=("a0.h1",)), HeadPolicy(freeze=("a0.h1",), anchor=("a1.h0",), anchor_weight=1.0)):
        with pytest.raises(ValueError, match=r"^runs.sft.heads with weight_decay = 0.01: .*remove weight_decay"):
            apply_head_policy(Trainer(), policy, "runs.sft.heads")
    with pytest.raises(ValueError, match=r"^runs.sft.train_heads with weight_decay = 0.01: .*remove weight_decay"):
        restrict_trainer(Trainer(), ["a0.h1"], "runs.sft.train_heads")
    assert restrict_trainer(Trainer(), None, "runs.sft.train_heads") is None


# Config ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda c: c["runs"]["sft"].update(train_heads=["a2.x3"]),
            "config key runs.sft.train_heads names 'a2.x3', which is not a head name",
        ),
        (
            lambda c: c["runs"]["sft"].update(train_heads=["a4.h0"]),
            "runs.sft.train_heads names a4.h0, which the model does not have (4 layers x 8 heads: a0.h0 to a3.h7)",
        ),
        (lambda c: c["runs"]["sft"].update(train_heads=["a0.h8"]), "a0.h0 to a3.h7"),
        (lambda c: c["runs"]["sft"].update(train_heads=[]), "runs.sft.train_heads"),
        (
            lambda c: c["runs"]["sft"].update(train_heads=["a0.h1"], trainer={"weight_decay": 0.1}),
            "runs.sft.trainer.weight_decay",
        ),
        (
            lambda c: c["runs"].update(given={"method": "models", "checkpoints": "x", "train_heads": ["a0.h1"]}),
            "runs.given.train_heads in the config: a models run trains nothing; remove train_heads",
        ),
    ],
)
def test_bad_train_heads_fail_the_config_check_naming_the_key(raw_config, edit, expected):
    edit(raw_config)
    with pytest.raises(ConfigError) as info:
        check_config(raw_config)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_train_heads_and_teacher_base_are_accepted(raw_config):
    raw_config["runs"]["sft"]["train_heads"] = ["a3.h7", "a0.h0"]
    raw_config["runs"]["distill"]["distill"]["teacher"] = "base"
    config = check_config(raw_config)
    assert config["runs"]["sft"]["train_heads"] == ["a3.h7", "a0.h0"] and config["runs"]["grpo"]["train_heads"] is None


def _plan(tmp_path, raw) -> tuple[dict[str, str], str]:
    """The whole DAG's dry run: its ``sparks teacher-traces`` command lines by run, and its output."""
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    result = snakemake(tmp_path, "-n", "-p", "--configfile", str(tmp_path / "c.yaml"))
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if "sparks teacher-traces" in line]
    return {line.split("--run ")[1].split()[0]: line for line in lines}, result.stdout


def test_teacher_base_samples_the_runs_own_base(raw_config, tmp_path):
    raw_config["runs"]["distill"]["distill"]["teacher"] = "base"
    commands, plan = _plan(tmp_path, raw_config)
    assert list(commands) == ["distill"] and "--teacher results/embedded/base " in commands["distill"]
    assert "--role teacher" not in plan  # no run needs the experiment's teacher now


def test_teacher_base_of_a_base_replicate_is_that_replicates_base(raw_config, tmp_path):
    raw_config["base"]["seeds"] = [1, 2]
    raw_config["runs"]["distill"]["distill"]["teacher"] = "base"
    commands, _ = _plan(tmp_path, raw_config)
    assert sorted(commands) == ["distill-b1", "distill-b2"]
    for seed in (1, 2):
        assert f"--teacher results/embedded/base-b{seed} " in commands[f"distill-b{seed}"]
