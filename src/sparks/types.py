"""The shared vocabulary of sparks' interpretability code. Importing it has no side effects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch


class HeadId(NamedTuple):
    """One attention head: its layer and its (query) head index."""

    layer: int
    head: int

    @property
    def name(self) -> str:
        """The node name used in every table (EAP-IG's convention): ``a{layer}.h{head}``."""
        return f"a{self.layer}.h{self.head}"


@dataclass(frozen=True)
class EdgeScores:
    """Attribution scores of one model on a set of clean/corrupted pairs, averaged per pair.

    Sign convention: a score estimates ``L(patched) - L(clean)`` where the upstream quantity is
    moved from its clean value to its corrupted one (``corrupt - clean``).
    """

    edges: torch.Tensor | None  # [n_upstream, n_readers]; 0 where no edge exists (see Graph.edge_mask); None: heads only
    heads: torch.Tensor  # [n_layers, n_heads]; node scores of each head's output (o_proj input slice)
    n_pairs: int  # examples the scores are averaged over
    pair_edges: torch.Tensor | None = None  # [n_pairs, n_edges] each pair's edge scores, edges in Graph.edge_mask order
