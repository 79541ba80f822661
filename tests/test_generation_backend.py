"""generation.backend: vllm hands sampling to vLLM with what the hf path uses (token ids,
sampling settings, token limit, end-of-reply tokens, a seed per sample) and yields the same
tables. vLLM needs CUDA: a stand-in module records what sparks asks of it here."""

from __future__ import annotations

import json
import shutil
import sys
import types
from pathlib import Path
from typing import ClassVar

import polars as pl
import pytest

from sparks.data import arithmetic
from sparks.evaluate import EvaluateSettings, sample_table
from sparks.generate import GenerationSettings, end_of_turn_ids, prompt_ids
from sparks.model.load import load_model, load_tokenizer
from sparks.tables import read_table


class Completion:
    def __init__(self, text: str, token_ids: list[int]):
        self.text, self.token_ids = text, token_ids


class StandInLLM:
    """vllm.LLM's interface: answers each arithmetic prompt with its correct trace and answer.
    Like vLLM it takes its share of the card when it starts: a second engine while one still
    holds memory fails; shutting down the V1 engine core (``llm_engine.engine_core.shutdown``)
    gives the memory back. ``events`` records starts and shutdowns, by model folder."""

    made: ClassVar[list] = []
    events: ClassVar[list] = []
    live: ClassVar[int] = 0

    def __init__(self, model: str, revision: str | None, seed: int, gpu_memory_utilization: float):
        self.kwargs = {"model": model, "revision": revision, "seed": seed, "gpu_memory_utilization": gpu_memory_utilization}
        if StandInLLM.live:
            raise ValueError("Free memory on device is less than desired GPU memory utilization")  # vLLM's start check
        StandInLLM.live += 1
        self.requests, self.params = [], []
        self.llm_engine = types.SimpleNamespace(engine_core=types.SimpleNamespace(shutdown=self._shutdown))
        StandInLLM.made.append(self)
        StandInLLM.events.append(("start", model))

    def _shutdown(self):
        StandInLLM.live -= 1
        StandInLLM.events.append(("shutdown", self.kwargs["model"]))

    def generate(self, requests, params, use_tqdm=True):
        self.requests += requests
        self.params += params
        outputs = []
        for request in requests:
            text = self.tokenizer.decode(request["prompt_token_ids"], skip_special_tokens=True)
            problem = arithmetic.parse_expression(text.split("=")[0])
            completion = arithmetic.completion(problem).removeprefix("<think>")  # the prompt opened the trace
            outputs.append(types.SimpleNamespace(outputs=[Completion(completion, [])]))
        return outputs


@pytest.fixture
def vllm(monkeypatch, tiny_model_dir):
    import sparks.generate

    module = types.ModuleType("vllm")
    module.LLM = StandInLLM
    module.SamplingParams = lambda **kwargs: kwargs
    distributed = types.ModuleType("vllm.distributed")
    distributed.cleanup_dist_env_and_memory = lambda: StandInLLM.events.append(("cleanup", None))
    module.distributed = distributed
    StandInLLM.made.clear()
    StandInLLM.events.clear()
    StandInLLM.live = 0
    StandInLLM.tokenizer = load_tokenizer(tiny_model_dir)
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setitem(sys.modules, "vllm.distributed", distributed)
    monkeypatch.setattr(sparks.generate, "_ENGINE", {})
    return module


def problems() -> pl.DataFrame:
    return pl.DataFrame(
        {"problem_id": [0, 1], "difficulty": ["easy", "hard"], "question": ["2+3=", "3+4*2+9="], "answer": ["5", "3"]}
    )


def test_evaluate_samples_through_vllm(vllm, tiny_model_dir):
    model, tok = load_model(tiny_model_dir, device="cpu"), load_tokenizer(tiny_model_dir)
    settings = EvaluateSettings.defaults(n_samples=3, k=(1, 3), max_new_tokens=40, temperature=0.6, top_p=0.95)
    engine = GenerationSettings.defaults(backend="vllm", gpu_memory_utilization=0.5)
    samples = sample_table(model, tok, problems(), settings, seed=7, engine=engine)
    (llm,) = StandInLLM.made
    assert llm.kwargs == {"model": str(tiny_model_dir), "revision": None, "seed": 7, "gpu_memory_utilization": 0.5}
    prompts = [tok.decode(r["prompt_token_ids"]) for r in llm.requests]
    assert [r["prompt_token_ids"] for r in llm.requests] == prompt_ids(tok, prompts)  # the hf path's token ids
    assert len(llm.requests) == 2 * 3
    assert [p["seed"] for p in llm.params] == list(range(7, 13))  # one seed per sample
    for p in llm.params:
        assert (p["temperature"], p["top_p"], p["max_tokens"]) == (0.6, 0.95, 40)
        assert p["stop_token_ids"] == end_of_turn_ids(tok)
    hf = sample_table(model, tok, problems(), EvaluateSettings.defaults(n_samples=1, k=(1,), max_new_tokens=2))
    assert samples["correct"].all() and samples.schema == hf.schema


def test_greedy_is_greedy_on_vllm(vllm, tiny_model_dir):
    """Temperature 0 sets every filter off, the repetition penalty too (vLLM keeps it when greedy)."""
    from sparks.generate import generate

    model, tok = load_model(tiny_model_dir, device="cpu"), load_tokenizer(tiny_model_dir)
    engine = GenerationSettings.defaults(backend="vllm")
    generate(model, tok, ["2+3=<think>"], 8, engine=engine, top_p=0.5, top_k=20, min_p=0.1, repetition_penalty=1.2)
    (params,) = StandInLLM.made[0].params
    off = {"temperature": 0.0, "top_p": 1.0, "top_k": -1, "min_p": 0.0, "repetition_penalty": 1.0}
    assert {k: params[k] for k in off} == off


def test_sampling_settings_reach_vllm_and_off_is_off(vllm, tiny_model_dir):
    """evaluate's top_k, min_p and repetition_penalty go into every SamplingParams; the defaults
    as vLLM's off values (top_k -1: every vLLM takes it, older ones refuse 0)."""
    model, tok = load_model(tiny_model_dir, device="cpu"), load_tokenizer(tiny_model_dir)
    engine = GenerationSettings.defaults(backend="vllm")
    card = {"temperature": 0.7, "top_p": 0.8, "top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1}
    sample_table(model, tok, problems(), EvaluateSettings.defaults(n_samples=2, k=(1,), **card), engine=engine)
    sample_table(model, tok, problems(), EvaluateSettings.defaults(n_samples=2, k=(1,), temperature=1.0), engine=engine)
    (llm,) = StandInLLM.made
    assert len(llm.params) == 8
    assert all({k: p[k] for k in card} == card for p in llm.params[:4])
    off = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "min_p": 0.0, "repetition_penalty": 1.0}
    assert all({k: p[k] for k in off} == off for p in llm.params[4:])


def test_vllm_missing_says_how_to_install(monkeypatch, tiny_model_dir):
    from sparks.generate import generate

    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm raises ImportError
    model, tok = load_model(tiny_model_dir, device="cpu"), load_tokenizer(tiny_model_dir)
    with pytest.raises(RuntimeError, match=r"pip install -e '\.\[vllm\]'"):
        generate(model, tok, ["2+3="], 4, engine=GenerationSettings.defaults(backend="vllm"))


def test_the_hf_backend_needs_the_loaded_model(tiny_model_dir):
    from sparks.generate import ModelSource, generate

    with pytest.raises(TypeError, match="load it with sparks.generate.load_generator"):
        generate(ModelSource(str(tiny_model_dir)), load_tokenizer(tiny_model_dir), ["2+3="], 4)


def test_a_head_intervention_is_never_sampled_on_vllm(vllm, tiny_model_dir):
    from sparks.evaluate.interventions import HeadIntervention
    from sparks.types import HeadId

    model, tok = load_model(tiny_model_dir, device="cpu"), load_tokenizer(tiny_model_dir)
    change = HeadIntervention("scale", (HeadId(0, 1),), alpha=2.0)
    settings = EvaluateSettings.defaults(n_samples=1, k=(1,), max_new_tokens=8)
    with pytest.raises(ValueError, match="a head intervention needs generation.backend: hf"):  # its hooks: the hf model's
        sample_table(model, tok, problems(), settings, change, engine=GenerationSettings.defaults(backend="vllm"))
    assert not StandInLLM.made


def experiment(tmp_path, raw_config, folders: dict[int, Path], **sections) -> tuple[dict, Path, Path]:
    """A checked config on generation.backend: vllm (and ``sections``), a manifest of run sft
    with the checkpoint ``folders`` (step -> folder), and a problems table of two eval problems."""
    from sparks.config import check_config
    from sparks.tables import with_provenance, write_table

    config = check_config({**raw_config, "generation": {"backend": "vllm"}, **sections})
    manifest = tmp_path / "runs" / "sft" / "checkpoints.json"
    manifest.parent.mkdir(parents=True)
    steps = sorted(folders)
    manifest.write_text(
        json.dumps(
            {
                "run": "sft",
                "method": "sft",
                "steps": steps,
                "checkpoints": {str(s): str(folders[s]) for s in steps},
                "model_hashes": {str(s): f"h{s}" for s in steps},
            }
        )
    )
    table = problems().with_columns(
        pl.lit("eval").alias("split"), pl.lit(1).alias("n_ops"), pl.lit("").alias("trace"), pl.lit(None, pl.String).alias("reply")
    )
    table = with_provenance(
        table, experiment=config["experiment"], run=None, step=None, task="arith", model_hash=None, config_hash="c"
    )
    return config, manifest, write_table(table, "problems", tmp_path / "problems.parquet")


def test_evaluate_on_vllm_leaves_the_gpu_to_the_engine(vllm, tiny_model_dir, raw_config, tmp_path, monkeypatch):
    """On a GPU machine the hf path puts the checkpoint on the card; before vLLM's engine asks for
    gpu_memory_utilization of it, nothing of the model may be there."""
    import torch

    from sparks.evaluate import evaluate_stage

    to_gpu = []

    def to(module, *args, **kwargs):
        if "cuda" in str(args[0] if args else kwargs.get("device")):
            to_gpu.append(type(module).__name__)
        return module  # (this machine has no GPU: record the move, stay)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *device: "stand-in GPU")  # the tables' machine column
    monkeypatch.setattr(torch.nn.Module, "to", to)
    monkeypatch.setattr(torch.nn.Module, "cuda", lambda module, *a, **k: to(module, "cuda"))
    config, manifest, problems_path = experiment(tmp_path, raw_config, {0: tiny_model_dir})
    evaluate_stage(config, manifest, 0, "arith", problems_path, tmp_path / "eval.parquet", tmp_path / "passk.parquet")
    assert StandInLLM.events == [("start", str(tiny_model_dir))]
    assert to_gpu == []  # no Hugging Face model went to the GPU before (or after) the engine started
    assert read_table(tmp_path / "eval.parquet", "eval")["correct"].all()


def test_the_engine_loads_the_revision_the_model_folder_names(vllm, tiny_model_dir, tmp_path):
    from sparks.generate import generate, load_generator
    from sparks.model.store import write_pointer

    folder = tmp_path / "base"
    folder.mkdir()
    write_pointer(folder, str(tiny_model_dir), "abc123")  # a hub model pinned to a revision, as prepare writes it
    engine = GenerationSettings.defaults(backend="vllm")
    model, tok = load_generator(folder, engine)
    generate(model, tok, ["2+3=<think>"], 8, engine=engine)
    assert StandInLLM.made[0].kwargs["revision"] == "abc123" and StandInLLM.made[0].kwargs["model"] == str(tiny_model_dir)


def test_style_pairs_free_the_first_engine_before_the_second_starts(vllm, tiny_model_dir, raw_config, tmp_path, monkeypatch):
    """Two models in one process: vLLM cannot start the second engine while the first holds its
    share of the card, so the first is shut down and cleaned up before."""
    from sparks.attribute.style import style_pairs_stage

    starting, reasoning = tmp_path / "checkpoint-0", tmp_path / "checkpoint-10"
    shutil.copytree(tiny_model_dir, starting)
    shutil.copytree(tiny_model_dir, reasoning)
    openings = {str(starting): "<think></think>5", str(reasoning): "<think>2+3=5</think>5"}

    def opening(llm, requests, params, use_tqdm=True):  # each model opens its own way
        ids = StandInLLM.tokenizer(openings[llm.kwargs["model"]], add_special_tokens=False)["input_ids"]
        return [types.SimpleNamespace(outputs=[Completion("", ids)]) for _ in requests]

    monkeypatch.setattr(StandInLLM, "generate", opening)
    sections = {"attribute": {"pairs": "style", "think": True, "compare_think_at": "none"}}
    config, manifest, problems_path = experiment(tmp_path, raw_config, {0: starting, 10: reasoning}, **sections)
    style_pairs_stage(config, manifest, "arith", problems_path, tmp_path / "pairs.parquet")
    assert StandInLLM.events == [
        ("start", str(starting)),
        ("shutdown", str(starting)),
        ("cleanup", None),
        ("start", str(reasoning)),
        ("shutdown", str(reasoning)),  # the stage gives the card back when it is done
        ("cleanup", None),
    ]
    pairs = read_table(tmp_path / "pairs.parquet", "pairs")
    assert pairs.height == 2 and (pairs["clean_opening"] == openings[str(reasoning)]).all()
