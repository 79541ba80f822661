"""Clean/corrupted pairs as token batches whose answer position is the last position of every row.

Pairs of one token length fill whole batches without padding; the rest (every length's partial
batch: most hub pairs, whose questions vary in length) are sorted by length and left-padded
together, with an attention mask and position ids that count from each row's first real token,
so a padded row scores as it would alone. A clean text and its corrupted text always have one
length, so positions match between the two runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
import torch
from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class PairBatch:
    clean_ids: torch.Tensor  # [batch, pos]
    corrupt_ids: torch.Tensor  # [batch, pos]
    clean_answer: torch.Tensor  # [batch] first token of the clean answer
    corrupt_answer: torch.Tensor | None  # [batch]; None when the pairs have no corrupted answer
    rows: torch.Tensor | None = None  # [batch] row numbers in the pairs frame the batch was cut from
    mask: torch.Tensor | None = None  # [batch, pos] 1 on real tokens, 0 on left padding; None: no padding

    def __len__(self) -> int:
        return len(self.clean_ids)

    def to(self, device: torch.device | str) -> PairBatch:
        corrupt = None if self.corrupt_answer is None else self.corrupt_answer.to(device)
        mask = None if self.mask is None else self.mask.to(device)
        return PairBatch(
            self.clean_ids.to(device), self.corrupt_ids.to(device), self.clean_answer.to(device), corrupt, self.rows, mask
        )

    def model_inputs(self, repeat: int = 1) -> dict[str, torch.Tensor]:
        """Keyword arguments a forward of the batch (stacked ``repeat`` times) needs for its padding:
        the attention mask and position ids counted from each row's first real token."""
        if self.mask is None:
            return {}
        mask = self.mask.repeat(repeat, 1)
        return {"attention_mask": mask, "position_ids": position_ids(mask)}


def position_ids(mask: torch.Tensor) -> torch.Tensor:
    """[batch, pos] positions counted from each left-padded row's first real token (0 on padding)."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def _ids(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> list[list[int]]:
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def pair_batches(pairs: pl.DataFrame, tokenizer: PreTrainedTokenizerBase, batch_size: int) -> list[PairBatch]:
    """Cut ``pairs`` (the pairs table) into batches of at most ``batch_size``: whole batches of one
    token length first, then the remainder of every length, left-padded together."""
    if pairs.is_empty():
        raise ValueError("no clean/corrupted pairs to attribute; check attribute.difficulties and attribute.think")
    clean = _ids(tokenizer, pairs["clean"].to_list())
    corrupt = _ids(tokenizer, pairs["corrupt"].to_list())
    answers = [ids[0] for ids in _ids(tokenizer, pairs["clean_answer"].to_list())]
    has_corrupt = pairs["corrupt_answer"].null_count() == 0
    wrong = answers if not has_corrupt else [ids[0] for ids in _ids(tokenizer, pairs["corrupt_answer"].to_list())]
    by_length: dict[int, list[int]] = {}
    for row, (c, k) in enumerate(zip(clean, corrupt)):
        if len(c) != len(k):
            raise ValueError(
                f"pair {pairs['pair_id'][row]} ({pairs['difficulty'][row]}): clean and corrupted prompts tokenize to "
                f"{len(c)} and {len(k)} tokens with this model's tokenizer; remake the pairs with it (prepare-data)"
            )
        by_length.setdefault(len(c), []).append(row)
    chunks, rest = [], []
    for length in sorted(by_length):
        rows = by_length[length]
        full = len(rows) - len(rows) % batch_size
        chunks += [rows[start : start + batch_size] for start in range(0, full, batch_size)]
        rest += rows[full:]
    chunks += [rest[start : start + batch_size] for start in range(0, len(rest), batch_size)]  # padded

    def padded(ids: list[list[int]], chunk: list[int], width: int) -> torch.Tensor:
        return torch.tensor([[tokenizer.pad_token_id] * (width - len(ids[r])) + ids[r] for r in chunk])

    batches = []
    for chunk in chunks:
        lengths = [len(clean[r]) for r in chunk]
        width = max(lengths)
        mask = None if min(lengths) == width else torch.tensor([[0] * (width - n) + [1] * n for n in lengths])
        batches.append(
            PairBatch(
                clean_ids=padded(clean, chunk, width),
                corrupt_ids=padded(corrupt, chunk, width),
                clean_answer=torch.tensor([answers[r] for r in chunk]),
                corrupt_answer=torch.tensor([wrong[r] for r in chunk]) if has_corrupt else None,
                rows=torch.tensor(chunk),
                mask=mask,
            )
        )
    return batches
