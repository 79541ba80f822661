"""Batched generation and greedy accuracy, shared by prepare, train and evaluate."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sparks.config import Section
from sparks.data.answers import is_correct


@dataclass(frozen=True)
class GenerationSettings(Section):
    """The ``generation`` section of the config: which engine samples completions."""

    SCHEMA_PATH = ("properties", "generation")

    backend: str
    gpu_memory_utilization: float


@torch.no_grad()
def generate(
    model: PreTrainedModel,
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
) -> list[str] | list[list[int]]:
    """Complete every prompt (left-padded batches, KV cache); greedy when temperature is 0, else
    sampled at ``temperature`` from the ``top_p`` nucleus (1.0: the whole distribution).
    Returns the completions' text, or with ``decode=False`` their token ids up to the first
    end-of-reply token (excluded). ``engine`` (generation section; default hf) may hand the work
    to vLLM (:func:`vllm_generate`), which loads the model from the folder ``model`` was loaded from."""
    if engine is not None and engine.backend == "vllm":
        return vllm_generate(model.name_or_path, tokenizer, prompts, max_new_tokens, temperature, seed, decode, top_p, engine)
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
        sampled = temperature > 0
        ids = model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            do_sample=sampled,
            temperature=temperature if sampled else None,
            top_k=0 if sampled else None,
            top_p=top_p if sampled else None,
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


_ENGINES: dict[str, object] = {}  # one vLLM engine per model folder and process


def vllm_generate(
    model_path: str,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    max_new_tokens: int,
    temperature: float,
    seed: int,
    decode: bool,
    top_p: float,
    engine: GenerationSettings,
) -> list[str] | list[list[int]]:
    """:func:`generate` on vLLM: the same token ids in, the same sampling (temperature, nucleus,
    token limit, end-of-reply tokens), one seed per prompt (``seed + i``, so a sample does not
    depend on what else is in the batch), the completions in prompt order."""
    try:
        from vllm import LLM, SamplingParams
    except ImportError as err:
        raise RuntimeError(
            "generation.backend: vllm needs vLLM: pip install -e '.[vllm]' on a CUDA machine, or set generation.backend: hf"
        ) from err
    if model_path not in _ENGINES:
        _ENGINES[model_path] = LLM(model=model_path, seed=seed, gpu_memory_utilization=engine.gpu_memory_utilization)
    stops = end_of_turn_ids(tokenizer)
    sampled = temperature > 0
    params = [
        SamplingParams(
            temperature=temperature if sampled else 0.0,
            top_p=top_p if sampled else 1.0,
            max_tokens=max_new_tokens,
            stop_token_ids=stops,
            seed=seed + i,
            skip_special_tokens=True,
        )
        for i in range(len(prompts))
    ]
    requests = [{"prompt_token_ids": ids} for ids in prompt_ids(tokenizer, prompts)]
    outputs = _ENGINES[model_path].generate(requests, params, use_tqdm=True)
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
