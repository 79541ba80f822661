"""The computational graph of a decoder-only transformer, as EAP-IG names it.

Upstream nodes write into the residual stream: ``input`` (the embeddings), every head
``a{l}.h{h}`` and every MLP ``m{l}``. Readers take their input from it: the query of every head
``a{l}.h{h}<q>``, the key and value of every *KV head* ``a{l}.kv{g}<k|v>`` (grouped-query
attention is kept: heads of a group share their k and v inputs), every MLP ``m{l}<mlp>`` and the
``logits``. An edge u -> v exists for every upstream node u that comes before reader v.

Upstream order:  input, a0.h0 .. a0.h{H-1}, m0, a1.h0, ..., m{L-1}
Reader order:    per layer: q of heads 0..H-1, k of KV heads, v of KV heads, mlp; then logits
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:  # torch is imported by the methods that build tensors: the graph's shape stays light (sparks plan)
    import torch


@dataclass(frozen=True)
class Graph:
    n_layers: int
    n_heads: int
    n_kv_heads: int

    @classmethod
    def of(cls, model_config) -> Graph:
        """The graph of a Hugging Face decoder config (Qwen2, Llama, ... field names)."""
        return cls(model_config.num_hidden_layers, model_config.num_attention_heads, model_config.num_key_value_heads)

    @property
    def readers_per_layer(self) -> int:
        return self.n_heads + 2 * self.n_kv_heads + 1  # q per head, k and v per KV head, mlp

    @property
    def n_upstream(self) -> int:
        return 1 + self.n_layers * (self.n_heads + 1)

    @property
    def n_readers(self) -> int:
        return self.n_layers * self.readers_per_layer + 1

    # Index helpers: positions of a layer's nodes in the upstream and reader orders.
    def head_index(self, layer: int, head: int = 0) -> int:
        return 1 + layer * (self.n_heads + 1) + head

    def mlp_index(self, layer: int) -> int:
        return 1 + layer * (self.n_heads + 1) + self.n_heads

    def reader_index(self, layer: int) -> int:
        """Index of the first reader (the q input of head 0) of ``layer``."""
        return layer * self.readers_per_layer

    def n_before(self, reader: int) -> int:
        """How many upstream nodes precede reader number ``reader`` (all of them feed it)."""
        if reader == self.n_readers - 1:
            return self.n_upstream
        layer, offset = divmod(reader, self.readers_per_layer)
        return self.mlp_index(layer) if offset == self.readers_per_layer - 1 else self.head_index(layer)

    @cached_property
    def upstream_names(self) -> list[str]:
        names = ["input"]
        for layer in range(self.n_layers):
            names += [f"a{layer}.h{h}" for h in range(self.n_heads)] + [f"m{layer}"]
        return names

    @cached_property
    def readers(self) -> list[tuple[str, str]]:
        """(node, input) of every reader, e.g. ("a1.h3", "q"), ("a1.kv0", "k"), ("m1", "mlp")."""
        out = []
        for layer in range(self.n_layers):
            out += [(f"a{layer}.h{h}", "q") for h in range(self.n_heads)]
            out += [(f"a{layer}.kv{g}", "k") for g in range(self.n_kv_heads)]
            out += [(f"a{layer}.kv{g}", "v") for g in range(self.n_kv_heads)]
            out.append((f"m{layer}", "mlp"))
        return out + [("logits", "logits")]

    @cached_property
    def edge_mask(self) -> torch.Tensor:
        """[n_upstream, n_readers] bool: True where the upstream node feeds the reader."""
        import torch

        before = torch.tensor([self.n_before(r) for r in range(self.n_readers)])  # [n_readers]
        return torch.arange(self.n_upstream)[:, None] < before[None, :]

    @property
    def n_edges(self) -> int:
        return sum(self.n_before(r) for r in range(self.n_readers))  # edge_mask's count, without torch

    def edges_frame(self, scores: torch.Tensor) -> pl.DataFrame:
        """Long table of every edge's score, ranked by |score| (rank 1 = most important)."""
        src, dst = self.edge_mask.nonzero(as_tuple=True)
        values = scores[src, dst].double().cpu().numpy()
        df = pl.DataFrame(
            {
                "src": [self.upstream_names[i] for i in src.tolist()],
                "dst": [self.readers[j][0] for j in dst.tolist()],
                "dst_input": [self.readers[j][1] for j in dst.tolist()],
                "score": values,
            }
        )
        return ranked(df)

    def kv_head(self, head: int) -> int:
        return head // (self.n_heads // self.n_kv_heads)


def ranked(df: pl.DataFrame) -> pl.DataFrame:
    """Add abs_score and rank (1 = largest |score|) to a table with a score column."""
    df = df.with_columns(pl.col("score").abs().alias("abs_score"))
    return df.with_columns(pl.col("abs_score").rank("ordinal", descending=True).cast(pl.Int64).alias("rank"))
