"""Clean/corrupted pairs as token batches of equal length (no padding, so the answer position
is the last position of every row and positions match between the two runs)."""

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

    def __len__(self) -> int:
        return len(self.clean_ids)

    def to(self, device: torch.device | str) -> PairBatch:
        corrupt = None if self.corrupt_answer is None else self.corrupt_answer.to(device)
        return PairBatch(self.clean_ids.to(device), self.corrupt_ids.to(device), self.clean_answer.to(device), corrupt, self.rows)


def _ids(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> list[list[int]]:
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def pair_batches(pairs: pl.DataFrame, tokenizer: PreTrainedTokenizerBase, batch_size: int) -> list[PairBatch]:
    """Group ``pairs`` (the pairs table) by token length and cut each group into batches."""
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
    batches = []
    for length in sorted(by_length):
        rows = by_length[length]
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            batches.append(
                PairBatch(
                    clean_ids=torch.tensor([clean[r] for r in chunk]),
                    corrupt_ids=torch.tensor([corrupt[r] for r in chunk]),
                    clean_answer=torch.tensor([answers[r] for r in chunk]),
                    corrupt_answer=torch.tensor([wrong[r] for r in chunk]) if has_corrupt else None,
                    rows=torch.tensor(chunk),
                )
            )
    return batches
