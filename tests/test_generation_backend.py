"""generation.backend: vllm hands sampling to vLLM with what the hf path uses (token ids,
temperature, nucleus, token limit, end-of-reply tokens, a seed per sample) and yields the same
tables. vLLM needs CUDA: a stand-in module records what sparks asks of it here."""

from __future__ import annotations

import sys
import types
from typing import ClassVar

import polars as pl
import pytest

from sparks.data import arithmetic
from sparks.evaluate import EvaluateSettings, sample_table
from sparks.generate import GenerationSettings, end_of_turn_ids, prompt_ids
from sparks.model.load import load_model, load_tokenizer


class Completion:
    def __init__(self, text: str, token_ids: list[int]):
        self.text, self.token_ids = text, token_ids


class StandInLLM:
    """vllm.LLM's interface: answers each arithmetic prompt with its correct trace and answer."""

    made: ClassVar[list] = []

    def __init__(self, model: str, seed: int, gpu_memory_utilization: float):
        self.kwargs = {"model": model, "seed": seed, "gpu_memory_utilization": gpu_memory_utilization}
        self.requests, self.params = [], []
        StandInLLM.made.append(self)

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
    StandInLLM.made.clear()
    StandInLLM.tokenizer = load_tokenizer(tiny_model_dir)
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setattr(sparks.generate, "_ENGINES", {})
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
    assert llm.kwargs == {"model": str(tiny_model_dir), "seed": 7, "gpu_memory_utilization": 0.5}
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
    from sparks.generate import generate

    model, tok = load_model(tiny_model_dir, device="cpu"), load_tokenizer(tiny_model_dir)
    generate(model, tok, ["2+3=<think>"], 8, engine=GenerationSettings.defaults(backend="vllm"))
    (params,) = StandInLLM.made[0].params
    assert params["temperature"] == 0.0 and params["top_p"] == 1.0


def test_vllm_missing_says_how_to_install(monkeypatch, tiny_model_dir):
    from sparks.generate import generate

    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm raises ImportError
    model, tok = load_model(tiny_model_dir, device="cpu"), load_tokenizer(tiny_model_dir)
    with pytest.raises(RuntimeError, match=r"pip install -e '\.\[vllm\]'"):
        generate(model, tok, ["2+3="], 4, engine=GenerationSettings.defaults(backend="vllm"))
