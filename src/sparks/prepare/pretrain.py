"""Plain-PyTorch causal-LM pre-training of a tiny model on a list of texts."""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PretrainConfig:
    """One pre-training: steps, batch size and peak learning rate come from the config's ``pretrain``
    section (defaults and limits in the schema); warm-up and weight decay are fixed here."""

    steps: int
    batch_size: int
    lr: float
    seed: int
    warmup: int = 50
    weight_decay: float = 0.01


def pretrain(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[tuple[str, str]],
    cfg: PretrainConfig,
    desc: str = "pretrain",
) -> list[float]:
    """Train on next-token loss of each completion (and eos) given its prompt; returns the loss curve.

    Prompt tokens are not predicted, as in supervised fine-tuning: the model learns to answer
    questions, not to write them.
    """
    if not examples:
        raise ValueError("pretrain got no examples")
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    batches = length_bucketed_batches(tokenizer, examples, cfg.batch_size, rng)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))

    def lr_factor(step: int) -> float:  # linear warm-up, cosine decay to 10 %
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    model.train()
    losses = []
    bar = tqdm(range(cfg.steps), desc=desc, mininterval=2.0)
    for step in bar:
        ids, mask, labels = next(batches)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % 50 == 0:
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    model.eval()
    log.info("%s: %d steps, final loss %.4f", desc, cfg.steps, sum(losses[-20:]) / len(losses[-20:]))
    return losses


def length_bucketed_batches(
    tokenizer: PreTrainedTokenizerBase, examples: Sequence[tuple[str, str]], batch_size: int, rng: random.Random
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Endless ``(input_ids, attention_mask, labels)`` batches, each ``[batch, pos]`` and right-padded.

    Each batch is drawn from one length bucket (texts of 8 tokens' length band), so little compute
    goes to padding; buckets are picked in proportion to their size. Labels are -100 on the prompt
    and on padding.
    """
    by_length: dict[int, list[tuple[list[int], int]]] = {}  # (token ids, number of prompt tokens)
    for prompt, completion in examples:
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        by_length.setdefault((len(prompt_ids) + len(completion_ids)) // 8, []).append(
            (prompt_ids + completion_ids, len(prompt_ids))
        )
    buckets = list(by_length.values())
    bucket_weights = [len(b) for b in buckets]
    while True:
        bucket = rng.choices(buckets, bucket_weights)[0]
        batch = [bucket[rng.randrange(len(bucket))] for _ in range(batch_size)]
        width = max(len(seq) for seq, _ in batch)
        ids = torch.full((len(batch), width), tokenizer.pad_token_id)
        mask = torch.zeros_like(ids)
        labels = torch.full_like(ids, -100)
        for row, (seq, n_prompt) in enumerate(batch):
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
            labels[row, n_prompt : len(seq)] = ids[row, n_prompt : len(seq)]
        yield ids, mask, labels
