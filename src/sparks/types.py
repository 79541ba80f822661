"""The shared vocabulary of sparks' interpretability code. Importing it has no side effects."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import torch

HEAD_NAME = re.compile(r"^a(\d+)\.h(\d+)$")


class HeadId(NamedTuple):
    """One attention head: its layer and its (query) head index."""

    layer: int
    head: int

    @property
    def name(self) -> str:
        """The node name used in every table (EAP-IG's convention): ``a{layer}.h{head}``."""
        return f"a{self.layer}.h{self.head}"


def parse_heads(names: Iterable[str], key: str) -> list[HeadId]:
    """The heads named ``a{layer}.h{head}``; a malformed name is a ValueError naming ``key``."""
    heads = []
    for name in names:
        match = HEAD_NAME.match(str(name))
        if match is None:
            raise ValueError(f"{key} names {name!r}, which is not a head name; write heads as a{{layer}}.h{{head}}, e.g. a2.h3")
        heads.append(HeadId(int(match[1]), int(match[2])))
    return heads


def check_heads(heads: Iterable[HeadId], n_layers: int, n_heads: int, key: str) -> None:
    """Every head exists in a model of ``n_layers`` layers of ``n_heads`` query heads."""
    for head in heads:
        if not (0 <= head.layer < n_layers and 0 <= head.head < n_heads):
            raise ValueError(
                f"{key} names {head.name}, which the model does not have ({n_layers} layers x {n_heads} heads: "
                f"a0.h0 to a{n_layers - 1}.h{n_heads - 1}); name heads in that range"
            )


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
