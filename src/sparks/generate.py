"""Batched generation and greedy accuracy, shared by prepare, train and evaluate."""

from __future__ import annotations

import gc
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sparks.config import Section
from sparks.data.answers import is_correct

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerationSettings(Section):
    """The ``generation`` section of the config: which engine samples completions."""

    SCHEMA_PATH = ("properties", "generation")

    backend: str
    gpu_memory_utilization: float


@dataclass(frozen=True)
class Sampling:
    """How :func:`generate` draws each next token; temperature 0 is greedy (the argmax: the
    other settings are then ignored). Each back end gets every setting, the off ones as its own
    off value, so that neither a model's generation_config.json (Qwen3-8B's sets top-k 20) nor an
    engine's default (transformers' top-k 50) filters tokens sparks did not ask it to."""

    temperature: float = 0.0
    top_p: float = 1.0  # 1.0: off
    top_k: int | None = None  # 0 or None: off
    min_p: float = 0.0  # 0: off
    repetition_penalty: float = 1.0  # 1.0: off

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0

    def hf_kwargs(self) -> dict[str, Any]:
        """``model.generate``'s sampling arguments, every one of them: one left out falls back to
        the model's generation config, then to transformers' defaults (top_k 50). top_k 0 and
        None add no logits processor (transformers 5 ``GenerationMixin._get_logits_processor``)."""
        if self.greedy:
            return {
                "do_sample": False,
                "temperature": None,
                "top_k": None,
                "top_p": None,
                "min_p": None,
                "repetition_penalty": None,
            }
        return {
            "do_sample": True,
            "temperature": self.temperature,
            "top_k": self.top_k or 0,
            "top_p": self.top_p,
            "min_p": self.min_p or None,
            "repetition_penalty": self.repetition_penalty,
        }

    def vllm_kwargs(self) -> dict[str, Any]:
        """``vllm.SamplingParams``' sampling arguments. top_k -1 is off in every vLLM: older ones
        refuse 0, newer ones take 0 or -1 (sampling_params.py: "Set to 0 (or -1) to consider all
        tokens"). vLLM keeps a repetition penalty at temperature 0, so greedy sets it off too."""
        if self.greedy:
            return {"temperature": 0.0, "top_p": 1.0, "top_k": -1, "min_p": 0.0, "repetition_penalty": 1.0}
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k or -1,
            "min_p": self.min_p,
            "repetition_penalty": self.repetition_penalty,
        }


@dataclass(frozen=True)
class ModelSource:
    """A model whose weights this process does not hold: its folder or hub id and revision, for an
    engine that loads them itself (vLLM)."""

    path: str
    revision: str | None = None


def load_generator(
    folder: str | Path, engine: GenerationSettings | None
) -> tuple[PreTrainedModel | ModelSource, PreTrainedTokenizerBase]:
    """What :func:`generate` needs of a model folder made by prepare or train, and its tokenizer:
    on hf the model (on the GPU when there is one); on vLLM only where its weights are, so that the
    card is free when the engine asks for ``generation.gpu_memory_utilization`` of it."""
    from sparks.model.load import load_checkpoint, load_tokenizer
    from sparks.model.store import resolve

    if engine is None or engine.backend != "vllm":
        return load_checkpoint(folder)
    source, revision = resolve(folder)
    return ModelSource(source, revision), load_tokenizer(source, revision)


@torch.no_grad()
def generate(
    model: PreTrainedModel | ModelSource,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    max_new_tokens: int,
    batch_size: int = 64,
    temperature: float = 0.0,
    seed: int = 0,
    progress: bool = False,
    decode: bool = True,
    top_p: float = 1.0,
    engine: GenerationSettings | None = None,
    top_k: int | None = None,
    min_p: float = 0.0,
    repetition_penalty: float = 1.0,
) -> list[str] | list[list[int]]:
    """Complete every prompt (left-padded batches, KV cache); greedy when temperature is 0 (the
    argmax: the other settings are ignored), else sampled at ``temperature`` from the tokens the
    filters keep: the ``top_k`` most likely (0 or None: all), the ``top_p`` nucleus (1.0: all)
    and those at least ``min_p`` times as likely as the most likely one (0: all); a
    ``repetition_penalty`` above 1 makes the tokens already in the prompt or the completion less
    likely (1.0: none). Off settings are passed as off (:class:`Sampling`). The back ends filter
    in another order (transformers top-k, top-p, then min-p; vLLM min-p first), which matters
    only where min_p > 0 and top_p < 1 both.
    Returns the completions' text, or with ``decode=False`` their token ids up to the first
    end-of-reply token (excluded). ``engine`` (generation section; default hf) may hand the work
    to vLLM (:func:`vllm_generate`), which loads the model from its folder: give it the
    :class:`ModelSource` of :func:`load_generator` (a loaded model works too, but holds the GPU
    memory the engine needs)."""
    sampling = Sampling(temperature, top_p, top_k, min_p, repetition_penalty)
    if engine is not None and engine.backend == "vllm":
        if isinstance(model, PreTrainedModel):
            if next(model.parameters()).device.type == "cuda":
                log.warning(
                    "generation.backend: vllm, but the Hugging Face model %s is on the GPU and keeps its memory from "
                    "the engine; load it with sparks.generate.load_generator",
                    model.name_or_path,
                )
            model = ModelSource(model.name_or_path)  # a hub model's revision is not kept: load_generator keeps it
        return vllm_generate(model, tokenizer, prompts, max_new_tokens, sampling, seed, decode, engine)
    if isinstance(model, ModelSource):
        raise TypeError(
            f"generation.backend: hf needs the loaded model, not only where it is ({model.path}); "
            "load it with sparks.generate.load_generator and the same generation settings"
        )
    if tokenizer.padding_side != "left":
        raise ValueError("generation needs a left-padding tokenizer (set tokenizer.padding_side = 'left')")
    device = next(model.parameters()).device
    generator_seed = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    outputs: list[str] = []
    batches = range(0, len(prompts), batch_size)
    templated = _templated(tokenizer, prompts)
    stops = end_of_turn_ids(tokenizer)
    for start in tqdm(batches, desc="generate", disable=not progress):
        batch = tokenizer(
            list(prompts[start : start + batch_size]), return_tensors="pt", padding=True, add_special_tokens=not templated
        )
        batch = {k: v.to(device) for k, v in batch.items()}
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator_seed)))
        ids = model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            **sampling.hf_kwargs(),
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=stops,
        )  # [batch, prompt + new]
        new = ids[:, batch["input_ids"].shape[1] :]
        if decode:
            outputs += tokenizer.batch_decode(new, skip_special_tokens=True)
        else:
            outputs += [_until(row.tolist(), stops) for row in new]
    model.train(was_training)
    return outputs


def _templated(tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str]) -> bool:
    """Whether a chat template wrote the BOS itself (R1-Distill's starts with it): then no second one is added."""
    return bool(tokenizer.bos_token) and all(p.startswith(tokenizer.bos_token) for p in prompts)


def prompt_ids(tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str]) -> list[list[int]]:
    """The prompts' token ids, as the hf batches hold them (without padding): what vLLM is given."""
    return tokenizer(list(prompts), add_special_tokens=not _templated(tokenizer, prompts))["input_ids"]


_ENGINE: dict[ModelSource, Any] = {}  # this process's one vLLM engine, by the model it serves


def vllm_engine(model: ModelSource, seed: int, gpu_memory_utilization: float) -> Any:
    """The vLLM engine of ``model``, built on first use. One engine lives per process: each takes
    ``gpu_memory_utilization`` of the card, so the engine of another model is freed first."""
    from vllm import LLM

    if model not in _ENGINE:
        free_engine()
        _ENGINE[model] = LLM(model=model.path, revision=model.revision, seed=seed, gpu_memory_utilization=gpu_memory_utilization)
    return _ENGINE[model]


def free_engine() -> None:
    """Shut down this process's vLLM engine, if there is one, and give its GPU memory back.

    Dropping the last reference is not enough while anything else holds the engine (vLLM's own
    tests call the engine core's ``shutdown`` before ``del``): shut it down explicitly (``LLM.shutdown``
    where vLLM has it, else its V1 engine core's), collect, then vLLM's
    ``cleanup_dist_env_and_memory`` (model-parallel groups, process group, CUDA cache)."""
    if not _ENGINE:
        return
    (llm,) = _ENGINE.values()
    _ENGINE.clear()
    core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    shutdown = getattr(llm, "shutdown", None) or getattr(core, "shutdown", None)
    if callable(shutdown):
        shutdown()
    del llm, core, shutdown
    gc.collect()
    try:
        from vllm.distributed import cleanup_dist_env_and_memory
    except ImportError:  # an older vLLM: what that function does, without its process groups
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return
    cleanup_dist_env_and_memory()


def vllm_generate(
    model: ModelSource,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    max_new_tokens: int,
    sampling: Sampling,
    seed: int,
    decode: bool,
    engine: GenerationSettings,
) -> list[str] | list[list[int]]:
    """:func:`generate` on vLLM: the same token ids in, the same sampling settings, token limit
    and end-of-reply tokens, one seed per prompt (``seed + i``, so a sample does not depend on
    what else is in the batch), the completions in prompt order."""
    try:
        from vllm import SamplingParams
    except ImportError as err:
        raise RuntimeError(
            "generation.backend: vllm needs vLLM: pip install -e '.[vllm]' on a CUDA machine, or set generation.backend: hf"
        ) from err
    llm = vllm_engine(model, seed, engine.gpu_memory_utilization)
    stops = end_of_turn_ids(tokenizer)
    params = [
        SamplingParams(
            **sampling.vllm_kwargs(),
            max_tokens=max_new_tokens,
            stop_token_ids=stops,
            seed=seed + i,
            skip_special_tokens=True,
        )
        for i in range(len(prompts))
    ]
    requests = [{"prompt_token_ids": ids} for ids in prompt_ids(tokenizer, prompts)]
    outputs = llm.generate(requests, params, use_tqdm=True)
    if decode:
        return [o.outputs[0].text for o in outputs]
    return [_until(list(o.outputs[0].token_ids), stops) for o in outputs]


def _until(ids: list[int], stops: list[int]) -> list[int]:
    return ids[: next((i for i, t in enumerate(ids) if t in stops), len(ids))]


def greedy_accuracy(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    answers: Sequence[str],
    max_new_tokens: int,
) -> list[bool]:
    """Per-problem correctness of greedy completions."""
    completions = generate(model, tokenizer, prompts, max_new_tokens)
    return [is_correct(c, a) for c, a in zip(completions, answers)]


def end_of_turn_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Token ids that end a reply: eos, and the chat template's end-of-turn token when it is
    another one (a Qwen2.5 base model's eos is ``<|endoftext|>``, its template ends turns with
    ``<|im_end|>``)."""
    ids = [tokenizer.eos_token_id]
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else ""
    for token in ("<|im_end|>", "<｜end▁of▁sentence｜>", "<|eot_id|>"):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token in template and isinstance(token_id, int) and token_id != tokenizer.unk_token_id and token_id not in ids:
            ids.append(token_id)
    return ids
