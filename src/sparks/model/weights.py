"""How much each attention head's own weights moved from the starting model.

Query head ``h`` owns rows ``h*d:(h+1)*d`` of ``q_proj.weight`` (and ``q_proj.bias``) and columns
``h*d:(h+1)*d`` of ``o_proj.weight`` (``d`` the head width; sparks.train.heads trains exactly these
slices). The change is ``||W_t - W_0|| / ||W_0||`` over those slices together: the trivial
detector of where post-training put its update, against which the circuit detectors are judged
on planted runs.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import PreTrainedModel

from sparks.model import head_dim
from sparks.model.store import resolve
from sparks.sources import weight_files


def _saved(files: list[Path], names: set[str]) -> dict[str, torch.Tensor]:
    """The tensors ``names`` of a safetensors model (only those are read)."""
    from safetensors import safe_open

    found = {}
    for path in files:
        with safe_open(str(path), framework="pt") as handle:
            for name in names & set(handle.keys()):
                found[name] = handle.get_tensor(name).float()
    return found


def _by_head(weight: torch.Tensor, n_heads: int, d: int, rows: bool) -> torch.Tensor:
    """[n_heads, ...] each head's rows (q_proj weight or bias) or columns (o_proj weight), flattened."""
    if rows:
        return weight.reshape(n_heads, d, -1).flatten(1)
    return weight.reshape(-1, n_heads, d).transpose(0, 1).flatten(1)


@torch.no_grad()
def head_weight_change(model: PreTrainedModel, base: str | Path) -> torch.Tensor | None:
    """[n_layers, n_heads] relative change of each head's q rows, q bias and o columns from the
    model saved in ``base``; None when the base is not a local safetensors folder (a hub id)."""
    source, _ = resolve(base)
    files = [p for p in weight_files(Path(source)) if p.suffix == ".safetensors"] if Path(source).is_dir() else []
    n_heads, d = model.config.num_attention_heads, head_dim(model.config)
    own = {}  # parameter name -> (tensor now, rows?)
    for index, layer in enumerate(model.model.layers):
        attention = layer.self_attn
        for name, param, rows in (("q_proj.weight", attention.q_proj.weight, True), ("q_proj.bias", attention.q_proj.bias, True),
                                  ("o_proj.weight", attention.o_proj.weight, False)):  # fmt: skip
            if param is not None:
                own[f"model.layers.{index}.self_attn.{name}"] = (index, param, rows)
    saved = _saved(files, set(own))
    if not files or set(saved) != set(own):
        return None
    now: dict[int, list[torch.Tensor]] = {}
    before: dict[int, list[torch.Tensor]] = {}
    for name, (index, param, rows) in own.items():
        now.setdefault(index, []).append(_by_head(param.float().cpu(), n_heads, d, rows))
        before.setdefault(index, []).append(_by_head(saved[name], n_heads, d, rows))
    out = torch.zeros(model.config.num_hidden_layers, n_heads, dtype=torch.float64)
    for index in now:
        after, start = torch.cat(now[index], 1).double(), torch.cat(before[index], 1).double()
        out[index] = (after - start).norm(dim=1) / start.norm(dim=1).clamp_min(1e-12)
    return out
