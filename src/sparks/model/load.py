"""Load a causal LM and its tokenizer from a hub id or a local Hugging Face folder.

A local folder written by ``save_pretrained`` goes through the same ``from_pretrained`` code
path as a hub model, which is how the tests exercise the hub loaders without a network.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from sparks.sources import ModelError, weight_files
from sparks.tables import file_hash


def _explain(source: str, err: Exception) -> ModelError:
    if Path(source).exists():
        hint = f"{source} exists but is not a complete Hugging Face model folder (config.json, weights, tokenizer files)"
    else:
        hint = (
            f"{source!r} is neither a local folder nor in the local Hugging Face cache; on a machine with network run "
            f"`huggingface-cli download {source}` once (compute nodes then read the cache with HF_HUB_OFFLINE=1)"
        )
    return ModelError(f"could not load model {source!r}: {type(err).__name__}: {str(err).splitlines()[0]}; {hint}")


def load_tokenizer(source: str | Path, revision: str | None = None) -> PreTrainedTokenizerBase:
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source), revision=revision)
    except (OSError, ValueError) as err:
        raise _explain(str(source), err) from err
    tokenizer.padding_side = "left"  # generation and last-position reads need left padding
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    source: str | Path, revision: str | None = None, device: str | None = None, dtype: torch.dtype | None = None
) -> PreTrainedModel:
    """A causal LM on CUDA when one is present (else CPU), in ``dtype`` or by default bfloat16
    on CUDA and float32 on CPU."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = dtype or (torch.bfloat16 if device.startswith("cuda") else torch.float32)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(source), revision=revision, dtype=dtype)
    except (OSError, ValueError) as err:
        raise _explain(str(source), err) from err
    return model.to(device)


def load_checkpoint(
    folder: str | Path, device: str | None = None, dtype: torch.dtype | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Model and tokenizer of a folder made by prepare or train (a pointer to a hub model, or the weights)."""
    from sparks.model.store import resolve

    source, revision = resolve(folder)
    return load_model(source, revision, device=device, dtype=dtype), load_tokenizer(source, revision)


def model_hash(folder: str | Path) -> str:
    """Hash of a local model folder's weights; for a hub id, a hash of the id itself.

    Only weight files count (safetensors, else legacy ``pytorch_model*.bin``): a trainer's
    checkpoint also holds ``training_args.bin``, which names its output folder and settings."""
    weights = weight_files(Path(folder))
    if weights:
        return file_hash(weights)
    return "hub:" + hashlib.sha256(str(folder).encode()).hexdigest()[:12]
